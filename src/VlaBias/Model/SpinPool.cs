// A tiny fork-join pool for the small-row kernel in decode mode (LinearKernels): the calling thread plus dedicated workers that spin for a
// short while between jobs before they block (as OpenMP's threads do). A decode step calls the kernel ~60 times, each
// call 50–500 µs; waking .NET thread-pool threads for each (Parallel.For) costs a good part of what the second core
// gives back. A job that finds the pool busy (another thread is using it) runs on its caller alone.
// When the cores are shared the workers may not get one: the caller then waits for a descheduled worker on every call
// (measured: batch-32 captioning 21 against 77 images/s). A job whose workers finish far behind the caller's own part
// marks the pool Contended for a while; meanwhile jobs run on the caller alone and LinearKernels opens no decode mode.
using System.Diagnostics;

namespace VlaBias.Model;

internal sealed class SpinPool
{
    private static readonly long SpinTicks = Stopwatch.Frequency / 2000; // 0.5 ms of spinning before a worker blocks
    private static readonly long LateTicks = Stopwatch.Frequency / 1000;  // workers 1 ms behind the caller's part: not on a core
    private static readonly long ContendedTicks = Stopwatch.Frequency * 2; // how long a contended pool stays off
    private long contendedUntil = long.MinValue;
    private readonly object gate = new();
    private Action<int>? job;
    private int parts, generation, remaining, sleepers, busy;

    public SpinPool(int workers)
    {
        Workers = workers;
        for (int i = 0; i < workers; i++)
            new Thread(Loop) { IsBackground = true, Name = $"vlatune-kernel-{i + 1}" }.Start(i + 1);
    }

    public int Workers { get; }

    /// <summary>Whether a recent job found its workers unable to get a core (then jobs run on the caller alone for a while).</summary>
    public bool Contended => Stopwatch.GetTimestamp() < Volatile.Read(ref contendedUntil);

    /// <summary>Runs body(0..parts-1), part 0 on the calling thread; returns when every part is done.</summary>
    public void Run(int parts, Action<int> body)
    {
        if (parts <= 1 || parts > Workers + 1 || Contended || Interlocked.Exchange(ref busy, 1) == 1)
        {
            for (int p = 0; p < parts; p++) body(p);
            return;
        }
        try
        {
            job = body;
            this.parts = parts;
            Volatile.Write(ref remaining, Workers);
            Interlocked.Increment(ref generation);
            if (Volatile.Read(ref sleepers) > 0) lock (gate) Monitor.PulseAll(gate);
            long start = Stopwatch.GetTimestamp();
            body(0);
            long own = Stopwatch.GetTimestamp() - start, done = start + own;
            var spin = new SpinWait();
            while (Volatile.Read(ref remaining) > 0) spin.SpinOnce(-1);
            long wait = Stopwatch.GetTimestamp() - done;
            if (wait > LateTicks && wait > 2 * own) Volatile.Write(ref contendedUntil, Stopwatch.GetTimestamp() + ContendedTicks);
        }
        finally { Volatile.Write(ref busy, 0); }
    }

    private void Loop(object? state)
    {
        int index = (int)state!, seen = 0;
        while (true)
        {
            long start = Stopwatch.GetTimestamp();
            while (Volatile.Read(ref generation) == seen)
            {
                if (Stopwatch.GetTimestamp() - start > SpinTicks)
                {
                    lock (gate)
                    {
                        // A full fence between announcing the sleep and re-reading generation: with a plain ++ the
                        // store could pass the load (x86 store-load reordering) and Run would skip the pulse.
                        Interlocked.Increment(ref sleepers);
                        while (Volatile.Read(ref generation) == seen) Monitor.Wait(gate);
                        Interlocked.Decrement(ref sleepers);
                    }
                    break;
                }
                Thread.SpinWait(16);
            }
            seen = Volatile.Read(ref generation);
            if (index < parts) job!(index);
            Interlocked.Decrement(ref remaining);
        }
    }
}
