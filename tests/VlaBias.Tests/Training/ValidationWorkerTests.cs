using NUnit.Framework;
using VlaBias.Tests.Data;
using VlaBias.Training;
using static TorchSharp.torch;

namespace VlaBias.Tests.Training;

/// <summary>When a debiasing run puts its validations on a second thread (ValidationWorker.Decide), and the worker's job queue.</summary>
public class ValidationWorkerTests
{
    private static Vla TinyBase() => Vla.Load(Path.Combine(RepoPaths.Root, "checkpoints", "tiny-base"));

    // A probe whose time depends on the thread count it runs at: ms at all threads, ms × scaling at half of them.
    private static Func<float[][]> Probe(int all, double scaling) => () =>
    {
        Thread.Sleep(TimeSpan.FromMilliseconds(get_num_threads() == all ? 8 : 8 * scaling));
        return [];
    };

    // Runs a test body at two intra-op threads and sets the count back after it.
    private static void AtTwoThreads(Action body)
    {
        int before = get_num_threads();
        try
        {
            set_num_threads(2);
            body();
        }
        finally { set_num_threads(before); }
    }

    private static ValidationWorker Worker(Vla vla, long seed) =>
        new(vla, VlaBias.Adapters.LoraAdapter.Apply(vla.Model, new VlaBias.Adapters.LoraConfig(), seed), threads: 1) { RestoreThreads = get_num_threads() };

    [Test]
    public void Auto_uses_the_worker_only_when_more_threads_gain_too_little_and_restores_the_thread_count()
    {
        AtTwoThreads(() =>
        {
            var vla = TinyBase();
            var flat = ValidationWorker.Decide("auto", vla, Probe(2, 1.0));
            Assert.That(flat.use, Is.True, flat.why);
            Assert.That(flat.threads, Is.EqualTo(1));
            Assert.That(get_num_threads(), Is.EqualTo(2), "the measurement leaves the thread count as it found it");
            var scales = ValidationWorker.Decide("auto", vla, Probe(2, 2.0));
            Assert.That(scales.use, Is.False, scales.why);
            Assert.That(scales.why, Does.Contain("one task of 2"));
            Assert.That(ValidationWorker.Decide("off", vla, Probe(2, 1.0)).use, Is.False);
            Assert.That(ValidationWorker.Decide("on", vla, Probe(2, 2.0)).use, Is.True);
            set_num_threads(1);
            var one = ValidationWorker.Decide("on", vla, Probe(1, 1.0));
            Assert.That(one.use, Is.False, "one thread cannot be split");
            Assert.That(one.why, Does.Contain("one thread"));
        });
    }

    [Test]
    public void Jobs_run_in_order_on_the_worker_thread_and_exceptions_come_back_through_their_task()
    {
        var vla = TinyBase();
        var order = new List<int>();
        int caller = Environment.CurrentManagedThreadId;
        using var worker = Worker(vla, seed: 0);
        var first = worker.Run(() => { Thread.Sleep(30); lock (order) order.Add(1); return Environment.CurrentManagedThreadId; });
        var second = worker.Run(() => { lock (order) order.Add(2); return get_num_threads(); });
        var failing = worker.Run<int>(() => throw new BadInputException("bad"));
        Assert.That(first.Result, Is.Not.EqualTo(caller));
        Assert.That(second.Result, Is.EqualTo(1), "the worker runs at its own thread count");
        Assert.That(order, Is.EqualTo(new[] { 1, 2 }));
        var e = Assert.Throws<AggregateException>(() => _ = failing.Result)!;
        Assert.That(e.InnerException, Is.TypeOf<BadInputException>());
    }

    [Test]
    public void Disposing_the_worker_gives_new_threads_the_thread_count_back()
    {
        AtTwoThreads(() =>
        {
            var vla = TinyBase();
            var worker = Worker(vla, seed: 0);
            Assert.That(worker.Run(() => get_num_threads()).Result, Is.EqualTo(1));
            worker.Dispose();
            int seen = 0;
            var fresh = new Thread(() => { using var _ = no_grad(); (ones(64, 64).matmul(ones(64, 64))).Dispose(); seen = get_num_threads(); });
            fresh.Start(); fresh.Join();
            Assert.That(seen, Is.EqualTo(2), "a thread started after the worker is gone runs at the count from before it");
        });
    }

    [Test]
    public void A_snapshot_keeps_the_tensors_as_they_were_when_taken()
    {
        var vla = TinyBase();
        var tuner = VlaBias.Adapters.LoraAdapter.Apply(vla.Model, new VlaBias.Adapters.LoraConfig(), seed: 0);
        var copy = TinyBase();
        using var worker = Worker(copy, seed: 1);
        var name = tuner.CheckpointTensors().Keys.First(k => k.EndsWith("lora_B.weight"));
        using (no_grad()) tuner.CheckpointTensors()[name].fill_(0.25);
        var snapshot = ValidationWorker.Snapshot(tuner);
        using (no_grad()) tuner.CheckpointTensors()[name].fill_(-1);   // training goes on
        worker.Run(() => { worker.Load(snapshot); return 0; }).Wait();
        Assert.That(worker.Tuner.CheckpointTensors()[name].max().item<float>(), Is.EqualTo(0.25f));
        Assert.That(worker.Tuner.CheckpointTensors()[name].min().item<float>(), Is.EqualTo(0.25f));
    }

    [Test]
    public void Idle_jobs_wait_behind_every_other_job_and_are_cancelled_when_the_worker_goes()
    {
        var vla = TinyBase();
        var order = new List<string>();
        var worker = Worker(vla, seed: 0);
        using var hold = new ManualResetEventSlim();
        var held = worker.Run(() => { hold.Wait(); return 0; });   // keeps the worker busy while the queues fill
        var idle1 = worker.RunWhenIdle(() => { lock (order) order.Add("idle 1"); return 1; });
        var idle2 = worker.RunWhenIdle(() => { lock (order) order.Add("idle 2"); return 2; });
        var urgent = worker.Run(() => { lock (order) order.Add("urgent"); return 3; });
        hold.Set();
        Task.WaitAll(held, idle1, idle2, urgent);
        Assert.That(order, Is.EqualTo(new[] { "urgent", "idle 1", "idle 2" }), "a job queued after the idle ones still runs first");

        using var hold2 = new ManualResetEventSlim();
        using var running = new ManualResetEventSlim();
        var busy = worker.Run(() => { running.Set(); hold2.Wait(); return 0; });
        // Dispose cancels every job still queued, so it must come after the worker has taken this one
        Assert.That(running.Wait(TimeSpan.FromSeconds(30)), Is.True, "the worker starts the job");
        var waiting = worker.RunWhenIdle(() => 4);
        var disposing = Task.Run(worker.Dispose);
        Thread.Sleep(200);   // Dispose is waiting for the running job
        hold2.Set();
        disposing.Wait();
        Assert.That(busy.Result, Is.EqualTo(0), "the running job finishes");
        Assert.That(waiting.IsCanceled, Is.True, "a queued idle job is cancelled");
        Assert.Throws<ObjectDisposedException>(() => worker.RunWhenIdle(() => 5));
    }
}
