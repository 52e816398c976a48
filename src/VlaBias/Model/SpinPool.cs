// A tiny fork-join pool for the small-row kernel in decode mode (LinearKernels): the calling thread plus dedicated workers that spin for a
// short while between jobs before they block (as OpenMP's threads do). A decode step calls the kernel ~60 times, each
// call 50–500 µs; waking .NET thread-pool threads for each (Parallel.For) costs a good part of what the second core
// gives back. A job that finds the pool busy (another thread is using it) runs on its caller alone.
using System.Diagnostics;

namespace VlaBias.Model;

internal sealed class SpinPool
{
    private static readonly long SpinTicks = Stopwatch.Frequency / 2000; // 0.5 ms of spinning before a worker blocks
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

    /// <summary>Runs body(0..parts-1), part 0 on the calling thread; returns when every part is done.</summary>
    public void Run(int parts, Action<int> body)
    {
        if (parts <= 1 || parts > Workers + 1 || Interlocked.Exchange(ref busy, 1) == 1)
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
            body(0);
            var spin = new SpinWait();
            while (Volatile.Read(ref remaining) > 0) spin.SpinOnce(-1);
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
