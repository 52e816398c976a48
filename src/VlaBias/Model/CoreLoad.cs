// How many threads of other processes are running right now: /proc/stat's procs_running (every runnable thread on the
// machine) less this process's own runnable threads (/proc/self/task/*/stat state R). Decode mode uses it to stay off
// cores that another process holds, ThreadWaitPolicy how libtorch's workers wait; Quiet (also the 1-minute load average within the cores) decides whether a kernel
// calibration may be cached. Cached for 200 ms (a read costs ~0.1–0.3 ms); 0 where /proc cannot be read.
using System.Diagnostics;

namespace VlaBias.Model;

internal static class CoreLoad
{
    private static readonly long CacheTicks = Stopwatch.Frequency / 5;
    private static long readAt = long.MinValue;
    private static int last;

    /// <summary>No other process runs now and the 1-minute load average is within the core count (a measurement taken now may be cached).</summary>
    public static bool Quiet()
    {
        if (OthersRunning() > 0) return false;
        try
        {
            var first = File.ReadAllText("/proc/loadavg").Split(' ')[0];
            return !double.TryParse(first, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double load)
                   || load <= Environment.ProcessorCount;
        }
        catch (IOException) { return true; }
        catch (UnauthorizedAccessException) { return true; }
    }

    public static int OthersRunning()
    {
        long now = Stopwatch.GetTimestamp();
        if (now - Volatile.Read(ref readAt) < CacheTicks) return Volatile.Read(ref last);
        int others = OthersRunningNow();
        Volatile.Write(ref last, others);
        Volatile.Write(ref readAt, now);
        return others;
    }

    /// <summary>The count read now, not cached.</summary>
    public static int OthersRunningNow() => Math.Max(0, AllRunning() - OwnRunning());

    private static int AllRunning()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/stat"))
                if (line.StartsWith("procs_running ", StringComparison.Ordinal) && int.TryParse(line.AsSpan(14).Trim(), out int n))
                    return n;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return 0;
    }

    private static int OwnRunning()
    {
        int running = 0;
        try
        {
            foreach (var task in Directory.EnumerateDirectories("/proc/self/task"))
            {
                try
                {
                    // "pid (comm) S ...": the state follows the last ')' (comm may itself hold spaces and parentheses)
                    string stat = File.ReadAllText(Path.Combine(task, "stat"));
                    int close = stat.LastIndexOf(')');
                    if (close >= 0 && close + 2 < stat.Length && stat[close + 2] == 'R') running++;
                }
                catch (IOException) { } // the thread ended while we looked
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return running;
    }
}
