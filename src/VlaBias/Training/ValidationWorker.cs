// A second copy of the model on its own thread, for the work of a debiasing run that the training steps need not wait
// for: the base's validation at the start, each validation of the tuner's tensors as they were at its step (a snapshot
// copied into the copy's tuner), the base's test-split evaluation in pieces while no validation waits, and half of the
// tuned model's test-split evaluation at the end.
//   in:  jobs, run one at a time in the order given, each with this thread's copy (Vla, Tuner); idle jobs (the pieces
//        of the base's test evaluation) only while no other job waits
//   out: a Task per job; DebiasTrainer applies validation results in step order, with the same rules as without the
//        worker, so a run decides exactly what it decides without it (the same validation points, best adapter, stop)
// Why: a small model is bound by per-operation costs that a second intra-op thread does not split, while two tasks of
// half the threads each run side by side (tiny-base on 2 cores: a second intra-op thread gave 1.05×; two single-threaded
// processes 1.5× the throughput of one). Whether to use it is measured at the start of each run (Decide).
using System.Diagnostics;
using Serilog;
using VlaBias.Adapters;
using VlaBias.Evaluation;
using VlaBias.Generation;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Training;

internal sealed class ValidationWorker : IDisposable
{
    /// <summary>Use the worker when doubling the threads of one task gains less than this (two tasks side by side then do more).</summary>
    public const double MinThreadScaling = 1.6;

    private readonly Queue<Action> jobs = new(), idleJobs = new();
    private readonly object gate = new();
    private readonly Thread thread;
    private volatile bool closing;

    public Vla Vla { get; }
    public ITunable Tuner { get; }

    /// <summary>
    /// The intra-op thread count Dispose sets back on the thread that disposes (libtorch keeps the last count set on any
    /// thread as the one every new thread starts with, so the worker's count would otherwise outlive it); null = none.
    /// </summary>
    public int? RestoreThreads { get; init; }

    public ValidationWorker(Vla vla, ITunable tuner, int threads)
    {
        Vla = vla; Tuner = tuner;
        thread = new Thread(() =>
        {
            set_num_threads(threads);   // per thread under OpenMP: this thread's own count
            while (Next() is { } job) job();
        }) { IsBackground = true, Name = "vlatune worker" };
        thread.Start();
    }

    /// <summary>Queues <paramref name="work"/>; its result (or exception) comes back through the task.</summary>
    public Task<T> Run<T>(Func<T> work) => Enqueue(jobs, work);

    /// <summary>
    /// Queues <paramref name="work"/> behind every job queued with <see cref="Run{T}"/>, now or later: it starts only when
    /// no such job waits (a job running is never interrupted, so keep idle jobs short).
    /// </summary>
    public Task<T> RunWhenIdle<T>(Func<T> work) => Enqueue(idleJobs, work);

    private Task<T> Enqueue<T>(Queue<Action> queue, Func<T> work)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        void Job()
        {
            if (closing) { done.SetCanceled(); return; }
            try { done.SetResult(work()); }
            catch (Exception e) { done.SetException(e); }
        }
        lock (gate)
        {
            if (closing) throw new ObjectDisposedException(nameof(ValidationWorker));
            queue.Enqueue(Job);
            Monitor.Pulse(gate);
        }
        return done.Task;
    }

    // The next job (those of Run first), waiting for one; null once closing.
    private Action? Next()
    {
        lock (gate)
        {
            while (!closing && jobs.Count == 0 && idleJobs.Count == 0) Monitor.Wait(gate);
            if (closing) return null;
            return jobs.Count > 0 ? jobs.Dequeue() : idleJobs.Dequeue();
        }
    }

    /// <summary>A copy of the tuner's tensors now, detached, for a job that runs later.</summary>
    public static Dictionary<string, Tensor> Snapshot(ITunable tuner)
    {
        using var _ = no_grad();
        return tuner.CheckpointTensors().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone().DetachFromDisposeScope());
    }

    /// <summary>Copies a snapshot into this thread's tuner and disposes it (call on the worker).</summary>
    public void Load(Dictionary<string, Tensor> snapshot)
    {
        using (no_grad())
            foreach (var (name, target) in Tuner.CheckpointTensors()) target.copy_(snapshot[name]);
        foreach (var t in snapshot.Values) t.Dispose();
    }

    /// <summary>Stops after the job running now: queued jobs are cancelled.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            if (closing) return;
            closing = true;
            Monitor.PulseAll(gate);
        }
        thread.Join();
        foreach (var job in jobs.Concat(idleJobs)) job();   // each sees closing and cancels its task
        jobs.Clear(); idleJobs.Clear();
        if (RestoreThreads is int n) set_num_threads(n);
    }

    /// <summary>
    /// Whether a run of <paramref name="vla"/> uses the worker: "on", "off", or "auto" = measured. auto needs two threads
    /// or more, room for a second copy of the weights (under a quarter of the available memory), and a no-grad forward of
    /// <paramref name="probe"/> (a few validation prompts) at all threads under <see cref="MinThreadScaling"/>× as fast
    /// as at half of them. Returns the decision, the threads each side gets, and why.
    /// </summary>
    public static (bool use, int threads, string why) Decide(string mode, Vla vla, Func<float[][]> probe)
    {
        int n = get_num_threads();
        if (mode == "off") return (false, n, "off");
        if (n < 2) return (false, n, (mode == "on" ? "on, but " : mode + ": ") + "one thread");
        int half = n / 2;
        if (mode == "on") return (true, half, $"on: {half} thread(s) each");
        long bytes = vla.Model.parameters().Sum(p => p.numel() * p.element_size());
        if (ComputeDType.AvailableBytes() is long avail && bytes > 0.25 * avail)
            return (false, n, $"auto: a second copy of the weights ({bytes / 1e9:F1} GB) would take over a quarter of the {avail / 1e9:F1} GB available");
        double full = Median(n, probe), halved = Median(half, probe);
        set_num_threads(n);
        double scaling = halved / full;
        return scaling < MinThreadScaling
            ? (true, half, $"auto: {n} threads ran a validation batch {scaling:F2}× as fast as {half} (under {MinThreadScaling}×), so two tasks of {half} side by side")
            : (false, n, $"auto: {n} threads ran a validation batch {scaling:F2}× as fast as {half} (at least {MinThreadScaling}×), so one task of {n}");
    }

    private static double Median(int threads, Func<float[][]> probe)
    {
        set_num_threads(threads);
        probe();   // warm-up
        var times = new List<double>();
        for (int i = 0; i < 5; i++)
        {
            long t = Stopwatch.GetTimestamp();
            probe();
            times.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
        }
        return KernelCalibration.Median(times);
    }
}
