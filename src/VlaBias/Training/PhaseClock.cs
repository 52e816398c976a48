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

    /// <summary>Process CPU seconds (all threads, user + system) so far.</summary>
    public static double CpuSeconds()
    {
        using var p = Process.GetCurrentProcess();
        return p.TotalProcessorTime.TotalSeconds;
    }

    /// <summary>Times the scope until disposed and adds it to <paramref name="phase"/>.</summary>
    public Scope Time(string phase) => new(this, phase, Stopwatch.GetTimestamp(), CpuSeconds());

    public void Add(string phase, double wall, double cpu)
    {
        if (!totals.TryGetValue(phase, out var t)) { t = (0, 0, 0); order.Add(phase); }
        totals[phase] = (t.wall + wall, t.cpu + cpu, t.count + 1);
    }

    public string Summary() => string.Join("; ", order.Select(p =>
    {
        var t = totals[p];
        return $"{p} {t.wall:F1} s wall / {t.cpu:F1} s CPU" + (t.count > 1 ? $" ({t.count}×)" : "");
    }));

    public JsonObject ToJson()
    {
        var o = new JsonObject();
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
            double wall = Stopwatch.GetElapsedTime(start).TotalSeconds, used = CpuSeconds() - cpu;
            owner.Add(phase, wall, used);
            Log.Debug("tune: {Phase} took {Wall:F2} s wall, {Cpu:F2} s CPU", phase, wall, used);
        }
    }
}
