// How libtorch's OpenMP workers wait at a barrier, chosen by measuring the cores when the process starts. libtorch
// ships GNU libgomp, which reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when it is loaded, so the choice has to be
// put into the native environment before the first tensor call (Apply, from the CLI's common setup).
//   cores free (no other process's thread runnable in a short sample) → GOMP_SPINCOUNT=Spin: workers spin briefly,
//     then sleep, which on a quiet machine is as fast as libgomp's default of 300,000 spins and costs far less when
//     another process arrives later;
//   cores taken → OMP_WAIT_POLICY=PASSIVE: workers sleep at once, so a spinning worker never holds the core that the
//     thread it waits for needs.
// Measured (docs/main-job-timing.md): on a quiet 2-core machine PASSIVE made probe scoring 1.4× slower than spinning;
// with two busy loops on the cores, libgomp's default and ACTIVE were 1.6× and 4.7× slower than PASSIVE.
// A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT always wins; with one thread there is no barrier and nothing is set.
using System.Runtime.InteropServices;

namespace VlaBias.Model;

public static partial class ThreadWaitPolicy
{
    /// <summary>Spins before a waiting worker sleeps, when the cores are free.</summary>
    public const int Spin = 3000;

    /// <summary>What <see cref="Apply"/> chose, for the log: null before it ran.</summary>
    public static string? Choice { get; private set; }

    /// <summary>
    /// Sets the wait policy for <paramref name="threads"/> intra-op threads (0 = all cores) unless the user set one;
    /// must run before libtorch is loaded. <paramref name="othersRunning"/> samples other processes' runnable threads
    /// (default: /proc, ten samples 10 ms apart).
    /// </summary>
    public static string Apply(int threads, Func<double>? othersRunning = null)
    {
        if (Choice is not null) return Choice;
        var (name, value, text) = Choose(threads, othersRunning ?? SampleOthers, Environment.GetEnvironmentVariable, Environment.ProcessorCount);
        if (name is not null && OperatingSystem.IsLinux()) SetNative(name, value!);
        return Choice = text;
    }

    /// <summary>
    /// The variable to set (null: none) for <paramref name="threads"/> threads on <paramref name="cores"/> cores, given
    /// the user's environment and a mean of <paramref name="othersRunning"/> runnable threads of other processes.
    /// </summary>
    public static (string? Name, string? Value, string Text) Choose(int threads, Func<double> othersRunning, Func<string, string?> env, int cores)
    {
        if (env("OMP_WAIT_POLICY") is not null || env("GOMP_SPINCOUNT") is not null) return (null, null, "OpenMP wait policy set by the environment");
        if (threads == 1 || (threads <= 0 && cores == 1)) return (null, null, "one thread: no OpenMP waiting");
        double others = othersRunning();
        return others >= 0.5
            ? ("OMP_WAIT_POLICY", "PASSIVE", $"OpenMP workers sleep when idle ({others:F1} threads of other processes running)")
            : ("GOMP_SPINCOUNT", Spin.ToString(System.Globalization.CultureInfo.InvariantCulture), $"OpenMP workers spin {Spin} times, then sleep (cores free)");
    }

    private static double SampleOthers()
    {
        double sum = 0;
        const int samples = 10;
        for (int i = 0; i < samples; i++)
        {
            sum += CoreLoad.OthersRunningNow();
            if (i + 1 < samples) Thread.Sleep(10);
        }
        return sum / samples;
    }

    private static void SetNative(string name, string value)
    {
        try { _ = setenv(name, value, 0); }
        catch (DllNotFoundException) { }
        catch (EntryPointNotFoundException) { }
    }

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int setenv(string name, string value, int overwrite);
}
