// Which kernel a linear layer runs: libtorch's (nn.functional.linear) or the small-row AVX-512 kernel
// (SmallRowKernel.cs). One object per model, shared by its KernelLinear modules, so the choice is made by the layer in
// its own forward and no global switch changes how every Linear computes.
// In: x [.., K], W [N, K], b [N] at each call. Out: y [.., N], from the kernel this object chooses.
// The kernel can run only where it is available here (Vector512 hardware-accelerated), the weights are contiguous fp32
// on the CPU, no autograd graph is needed, and x has at most MaxRows rows (8 on the calling thread; 64 in decode mode,
// split over a SpinPool). Within that, Choice decides: Libtorch never takes it, SmallRows always does (as before the
// calibration; VLATUNE_SMALL_LINEAR=1), Auto (the default) takes it for a (shape, rows, threads) only where
// KernelCalibration measured it faster than libtorch on this CPU. libtorch is the reference the tests compare with.
// Decode mode is a scope the decoding engine owns (Decoding): while it is open on a thread, libtorch runs on one thread
// and the kernel takes every linear of up to DecodeMaxRows rows called from that thread on all cores. libtorch's
// thread count is process-wide, so one decode mode at a time per process: a second one asked for from another thread
// runs without it; asked for again on the same thread while open is a programming error. On Auto decode mode stays
// closed: its linears alone measured faster (a 1408×512 linear of one row: 59 µs over the pool against 115 µs in
// libtorch) yet whole generation was slower (63.9 against 90.6 tokens/s, `vlatune bench`, 2 cores, Xeon family 6
// model 207), because the rest of each step runs on one thread; and a pool whose workers cannot get a core makes every
// call wait for them (21 against 77 images/s). Only VLATUNE_SMALL_LINEAR=1 opens it.
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace VlaBias.Model;

/// <summary>How a LinearKernels object chooses: by measurement, always the small-row kernel where it can run, or never.</summary>
public enum KernelChoice { Auto, SmallRows, Libtorch }

public sealed class LinearKernels
{
    /// <summary>Rows of x up to which the kernel runs on the calling thread (libtorch's GEMM on two threads is faster above).</summary>
    public const int CallerThreadMaxRows = 8;

    /// <summary>Rows of a decode step up to which <see cref="Decoding"/> switches to decode mode.</summary>
    public const int DecodeMaxRows = 64;

    /// <summary>Whether this machine can run the small-row kernel at all (AVX-512).</summary>
    public static readonly bool SmallRowsSupported = Vector512.IsHardwareAccelerated;

    /// <summary>The choice VLATUNE_SMALL_LINEAR forces: 0 → Libtorch, 1 → SmallRows, unset or anything else → Auto.</summary>
    public static KernelChoice EnvironmentChoice => Environment.GetEnvironmentVariable("VLATUNE_SMALL_LINEAR") switch
    {
        "0" => KernelChoice.Libtorch,
        "1" => KernelChoice.SmallRows,
        _ => KernelChoice.Auto,
    };

    /// <summary>Always libtorch: for layers that run at many rows (the vision tower: hundreds of patches per image).</summary>
    public static readonly LinearKernels LibtorchOnly = new(KernelChoice.Libtorch);

    // One decode mode per process (libtorch's thread count is process-wide): the managed thread that owns it, 0 = none.
    private static int decodeOwnerThread;
    private static readonly Lazy<SpinPool> Pool = new(() => new SpinPool(Math.Max(1, Math.Min(get_num_threads(), Environment.ProcessorCount) - 1)));

    private readonly KernelCalibration? calibration;
    private readonly bool available;
    private int decodingThread; // the thread on which this object's decode mode is open, 0 = none

    /// <param name="choice">How to choose (default: <see cref="EnvironmentChoice"/>).</param>
    /// <param name="calibration">Where Auto's measurements live (default: <see cref="KernelCalibration.Default"/>, read at first use).</param>
    public LinearKernels(KernelChoice? choice = null, KernelCalibration? calibration = null) : this(choice, calibration, SmallRowsSupported) { }

    /// <param name="available">
    /// Whether the kernel may run at all. Tests pass true on every CPU: without AVX-512 .NET computes Vector512 in
    /// software, the same arithmetic only slower, so the kernel and the choices around it are checked everywhere;
    /// models always use <see cref="SmallRowsSupported"/>.
    /// </param>
    internal LinearKernels(KernelChoice? choice, KernelCalibration? calibration, bool available)
    {
        Choice = choice ?? EnvironmentChoice;
        this.calibration = calibration;
        this.available = available;
    }

    /// <summary>How this object chooses; settable so a bench can time the same model with the kernel forced off.</summary>
    public KernelChoice Choice { get; set; }

    /// <summary>Whether this object may choose the small-row kernel at all.</summary>
    public bool SmallRows => Choice != KernelChoice.Libtorch && available;

    /// <summary>Whether decode mode is open on the calling thread.</summary>
    public bool InDecodeMode => decodingThread != 0 && decodingThread == Environment.CurrentManagedThreadId;

    /// <summary>Rows of x up to which the small-row kernel is chosen on the calling thread now.</summary>
    public int MaxRows => InDecodeMode ? DecodeMaxRows : CallerThreadMaxRows;

    /// <summary>The measurements Auto decides by.</summary>
    public KernelCalibration Calibration => calibration ?? KernelCalibration.Default;

    /// <summary>y = x·Wᵀ (+ b) with the kernel this object chooses for these tensors.</summary>
    public Tensor Linear(Tensor x, Tensor w, Tensor? b) =>
        Applies(x, w, b) ? SmallRowKernel.Forward(x, w, b, InDecodeMode ? Pool.Value : null) : nn.functional.linear(x, w, b);

    /// <summary>Whether <see cref="Linear"/> takes the small-row kernel for these tensors (on Auto, measuring the shape at its first use).</summary>
    public bool Applies(Tensor x, Tensor w, Tensor? b)
    {
        if (!SmallRows || w.dim() != 2 || x.dim() < 1) return false;
        if (x.dtype != ScalarType.Float32 || w.dtype != ScalarType.Float32 || x.device_type != DeviceType.CPU || w.device_type != DeviceType.CPU) return false;
        if (!w.is_contiguous() || b is not null && (b.dtype != ScalarType.Float32 || !b.is_contiguous() || b.device_type != DeviceType.CPU)) return false;
        long k = w.shape[1];
        if (k == 0 || x.shape[^1] != k) return false; // nn.functional.linear reports the mismatch
        long m = x.numel() / k;
        if (m < 1 || m > MaxRows) return false;
        if (is_grad_enabled() && (x.requires_grad || w.requires_grad || b is not null && b.requires_grad)) return false;
        // in decode mode libtorch runs on one thread: the kernel on all cores is the better of the two for every linear
        if (Choice == KernelChoice.SmallRows || InDecodeMode) return true;
        return Chooses(Calibration.Get("caller", w.shape[0], k, m, null));
    }

    /// <summary>Whether Auto takes the kernel for a shape measured so (outside decode mode).</summary>
    public static bool Chooses(KernelCalibration.Entry e) => e.SmallUs < CallerMargin * e.LibtorchUs;

    /// <summary>
    /// On Auto the kernel takes a shape only where one call of it measured at most this share of libtorch's time. One
    /// call in isolation overstates the kernel inside a model: with the 512×512 and 256×512 linears of the bench config
    /// measured 0.88× and 0.51× of libtorch, whole cached generation ran at 69 against 89 tokens/s with them (same
    /// `vlatune bench` run, runs alternated; 2 cores, Xeon family 6 model 207). Where the kernel was written it took a
    /// third of libtorch's time on the model's linears, which this margin still lets through.
    /// </summary>
    public const double CallerMargin = 0.5;

    /// <summary>
    /// Decode mode for the steps of a generation with <paramref name="rows"/> sequences on the calling thread (disposing
    /// the result ends it): libtorch runs on one thread, and the kernel takes every linear of up to DecodeMaxRows rows
    /// and splits it over the intra-op thread count with its own workers. A decode step is almost all linears of few
    /// rows; the rest (norms, rotary, attention over the cache) is too small for libtorch to parallelise anyway.
    /// A no-op scope when the kernel is off, there is one thread, there are more rows, or another thread is decoding;
    /// on Auto also when the calibration found libtorch as fast, or other processes hold the cores. Opening it twice on
    /// one thread throws.
    /// </summary>
    public IDisposable Decoding(long rows)
    {
        int me = Environment.CurrentManagedThreadId;
        if (decodingThread == me || Volatile.Read(ref decodeOwnerThread) == me)
            throw new InvalidOperationException("decode mode is already open on this thread (a generation inside a generation)");
        int threads = get_num_threads();
        if (!SmallRows || threads <= 1 || rows > DecodeMaxRows) return NoScope.Instance;
        if (Choice == KernelChoice.Auto) return NoScope.Instance;
        if (Interlocked.CompareExchange(ref decodeOwnerThread, me, 0) != 0) return NoScope.Instance;
        _ = Pool.Value;
        set_num_threads(1);
        decodingThread = me;
        return new DecodeScope(this, threads);
    }

    /// <summary>Ends decode mode and gives libtorch back its thread count.</summary>
    private sealed class DecodeScope(LinearKernels owner, int threads) : IDisposable
    {
        private bool open = true;

        public void Dispose()
        {
            if (!open) return;
            open = false;
            owner.decodingThread = 0;
            set_num_threads(threads);
            Volatile.Write(ref decodeOwnerThread, 0);
        }
    }

    private sealed class NoScope : IDisposable
    {
        public static readonly NoScope Instance = new();
        public void Dispose() { }
    }
}
