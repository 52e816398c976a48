// Hands freed native memory back to the system. libtorch allocates CPU tensors with glibc's malloc, which keeps freed
// chunks below its mmap threshold (128 KiB at first, rising to 32 MiB as large blocks are freed) in its arenas, one per
// allocating thread, and returns few of them. With a real-size model every forward frees hundreds of MiB of such
// activations, so the resident set climbs batch after batch although each batch needs the same memory: full-prompt
// batches of 8 yes/no prompts (745 positions) on the llava-interleave-0.5b shapes in f32 took RSS from 3.7 to 7.4 GB
// over five batches. malloc_trim(0) returns the free pages of every arena (madvise); called after each of those
// batches it held RSS at 3.8 GB and the batches took as long (31–35 s). A fixed threshold instead
// (MALLOC_MMAP_THRESHOLD_=1048576) held RSS too but made each batch ~35% slower: every large tensor is mapped afresh and
// faulted in.
// Policy, applied after every model forward (LlavaModel.forward): at most every 100 ms read the resident set
// (/proc/self/statm); when it exceeds the lowest reading since the last trim by 256 MiB, trim. tiny-base's runs seldom
// do (a 30-step run of the main job trimmed once, 665 → 518 MiB, a few ms). Off Linux, or where libc has no
// malloc_trim (musl), nothing happens.
// VLATUNE_MALLOC_TRIM=0 turns it off (for before/after measurements).
using System.Diagnostics;
using System.Runtime.InteropServices;
using Serilog;

namespace VlaBias.Model;

public static class NativeHeap
{
    public const long GrowthBytes = 256L << 20;
    private static readonly long IntervalTicks = Stopwatch.Frequency / 10;
    private static readonly object Gate = new();
    private static readonly bool Enabled = OperatingSystem.IsLinux() && Environment.GetEnvironmentVariable("VLATUNE_MALLOC_TRIM") != "0";
    private static long nextCheck;
    private static long floor = long.MaxValue;
    private static bool unavailable;
    private static long pageBytes;

    /// <summary>Trims made by this process (for tests and logs).</summary>
    public static int Trims { get; private set; }

    [DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    /// <summary>Cheap enough to call after every forward: a clock read, and now and then one of /proc/self/statm.</summary>
    public static void AfterForward()
    {
        if (!Enabled || unavailable) return;
        long now = Stopwatch.GetTimestamp();
        if (now < Volatile.Read(ref nextCheck) || !Monitor.TryEnter(Gate)) return;
        try
        {
            nextCheck = now + IntervalTicks;
            if (ResidentBytes() is not long rss) { unavailable = true; return; }
            floor = Math.Min(floor, rss);
            if (rss - floor >= GrowthBytes) Trim();
        }
        finally { Monitor.Exit(Gate); }
    }

    /// <summary>Returns free heap pages to the system now; false where that cannot be done here.</summary>
    public static bool Trim()
    {
        if (!OperatingSystem.IsLinux() || unavailable) return false;
        lock (Gate)
        {
            long? before = ResidentBytes();
            try { MallocTrim(0); }
            catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException) { unavailable = true; return false; }
            Trims++;
            floor = ResidentBytes() ?? floor;
            Log.Debug("memory: trimmed the native heap, resident {Before} → {After} MiB", before >> 20, floor >> 20);
            return true;
        }
    }

    /// <summary>Resident set size in bytes (the second field of /proc/self/statm, in pages), or null where it cannot be read.</summary>
    public static long? ResidentBytes()
    {
        try
        {
            var fields = File.ReadAllText("/proc/self/statm").Split(' ');
            if (fields.Length < 2 || !long.TryParse(fields[1], out long pages)) return null;
            if (pageBytes == 0) pageBytes = Environment.SystemPageSize;
            return pages * pageBytes;
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }
}
