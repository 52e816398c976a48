// Where a run's time goes: wall-clock and process CPU seconds per named phase (loading, base validation, steps,
// validations, final evaluations), summed over repeats. CPU seconds are the figure to compare on a shared machine:
// wall time there depends on what else runs, CPU time much less. The trainer logs each phase as it ends (debug) and the
// totals at the end (information), and trainer_state.json keeps them under "timing".
using System.Diagnostics;
using System.Text.Json.Nodes;
using Serilog;

namespace VlaBias.Training;

internal sealed class PhaseClock
{
    private readonly Dictionary<string, (double wall, double cpu, int count)> totals = [];
    private readonly List<string> order = [];
    private readonly Lock gate = new();

    /// <summary>
    /// CPU seconds of the calling thread instead of the process: set when two threads time phases side by side (the
    /// trainer's worker), each with its own intra-op threads of one, so a thread's CPU time is its phase's.
    /// </summary>
    public bool ThreadCpu { get; set; }

    /// <summary>Process CPU seconds (all threads, user + system) so far.</summary>
    public static double CpuSeconds()
    {
        using var p = Process.GetCurrentProcess();
        return p.TotalProcessorTime.TotalSeconds;
    }

    /// <summary>CPU seconds of the calling thread (Linux CLOCK_THREAD_CPUTIME_ID), or the process's elsewhere.</summary>
    public static double ThreadCpuSeconds()
    {
        if (!OperatingSystem.IsLinux()) return CpuSeconds();
        var ts = new TimeSpec();
        return clock_gettime(3, ref ts) == 0 ? ts.Seconds + ts.Nanoseconds * 1e-9 : CpuSeconds();
    }

    private struct TimeSpec { public long Seconds; public long Nanoseconds; }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = false)]
    private static extern int clock_gettime(int clock, ref TimeSpec ts);

    private double Cpu() => ThreadCpu ? ThreadCpuSeconds() : CpuSeconds();

    /// <summary>Times the scope until disposed and adds it to <paramref name="phase"/>.</summary>
    public Scope Time(string phase) => new(this, phase, Stopwatch.GetTimestamp(), Cpu());

    public void Add(string phase, double wall, double cpu)
    {
        lock (gate)
        {
            if (!totals.TryGetValue(phase, out var t)) { t = (0, 0, 0); order.Add(phase); }
            totals[phase] = (t.wall + wall, t.cpu + cpu, t.count + 1);
        }
    }

    public string Summary()
    {
        lock (gate)
            return string.Join("; ", order.Select(p =>
            {
                var t = totals[p];
                return $"{p} {t.wall:F1} s wall / {t.cpu:F1} s CPU" + (t.count > 1 ? $" ({t.count}×)" : "");
            }));
    }

    public JsonObject ToJson()
    {
        var o = new JsonObject();
        lock (gate)
        foreach (var p in order)
        {
            var t = totals[p];
            o[p] = new JsonObject { ["wall_s"] = Math.Round(t.wall, 2), ["cpu_s"] = Math.Round(t.cpu, 2), ["count"] = t.count };
        }
        return o;
    }

    public readonly struct Scope(PhaseClock owner, string phase, long start, double cpu) : IDisposable
    {
        public void Dispose()
        {
            double wall = Stopwatch.GetElapsedTime(start).TotalSeconds, used = owner.Cpu() - cpu;
            owner.Add(phase, wall, used);
            Log.Debug("tune: {Phase} took {Wall:F2} s wall, {Cpu:F2} s CPU", phase, wall, used);
        }
    }
}
