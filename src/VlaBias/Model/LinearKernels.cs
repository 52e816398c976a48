// Which kernel a linear layer runs: libtorch's (nn.functional.linear) or the small-row AVX-512 kernel
// (SmallRowKernel.cs). One object per model, shared by its KernelLinear modules, so the choice is made by the layer in
// its own forward and no global switch changes how every Linear computes.
// In: x [.., K], W [N, K], b [N] at each call. Out: y [.., N], from the kernel this object chooses:
//   the small-row kernel when it is available here (Vector512 hardware-accelerated, not VLATUNE_SMALL_LINEAR=0), the
//   weights are contiguous fp32 on the CPU, no autograd graph is needed, and x has at most MaxRows rows
//   (8 on the calling thread; 64 in decode mode, split over a spinning thread pool);
//   libtorch otherwise (the reference the tests compare the kernel with).
// Decode mode is a scope the decoding engine owns (Decoding): while it is open on a thread, libtorch runs on one thread
// and the kernel takes every linear of up to DecodeMaxRows rows called from that thread on all cores. libtorch's
// thread count is process-wide, so one decode mode at a time per process: a second one asked for from another thread
// runs without it; asked for again on the same thread while open is a programming error.
// This is where a kernel choice by measurement (a calibration per CPU and shape) plugs in: Applies decides per call.
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace VlaBias.Model;

public sealed class LinearKernels
{
    /// <summary>Rows of x up to which the kernel runs on the calling thread (libtorch's GEMM on two threads is faster above).</summary>
    public const int CallerThreadMaxRows = 8;

    /// <summary>Rows of a decode step up to which <see cref="Decoding"/> switches to decode mode.</summary>
    public const int DecodeMaxRows = 64;

    /// <summary>Whether this machine and environment allow the small-row kernel (AVX-512; VLATUNE_SMALL_LINEAR=0 turns it off).</summary>
    public static readonly bool SmallRowsSupported =
        Vector512.IsHardwareAccelerated && Environment.GetEnvironmentVariable("VLATUNE_SMALL_LINEAR") != "0";

    /// <summary>Always libtorch: for layers that run at many rows (the vision tower: hundreds of patches per image).</summary>
    public static readonly LinearKernels LibtorchOnly = new(smallRows: false);

    // One decode mode per process (libtorch's thread count is process-wide): the managed thread that owns it, 0 = none.
    private static int decodeOwnerThread;
    private static readonly Lazy<SpinPool> Pool = new(() => new SpinPool(Math.Max(1, Math.Min(get_num_threads(), Environment.ProcessorCount) - 1)));

    private int decodingThread; // the thread on which this object's decode mode is open, 0 = none

    /// <param name="smallRows">Allow the small-row kernel (default: where <see cref="SmallRowsSupported"/>).</param>
    public LinearKernels(bool? smallRows = null) => SmallRows = (smallRows ?? true) && SmallRowsSupported;

    /// <summary>Whether this object may choose the small-row kernel at all.</summary>
    public bool SmallRows { get; }

    /// <summary>Whether decode mode is open on the calling thread.</summary>
    public bool InDecodeMode => decodingThread != 0 && decodingThread == Environment.CurrentManagedThreadId;

    /// <summary>Rows of x up to which the small-row kernel is chosen on the calling thread now.</summary>
    public int MaxRows => InDecodeMode ? DecodeMaxRows : CallerThreadMaxRows;

    /// <summary>y = x·Wᵀ (+ b) with the kernel this object chooses for these tensors.</summary>
    public Tensor Linear(Tensor x, Tensor w, Tensor? b) =>
        Applies(x, w, b) ? SmallRowKernel.Forward(x, w, b, InDecodeMode ? Pool.Value : null) : nn.functional.linear(x, w, b);

    /// <summary>Whether <see cref="Linear"/> takes the small-row kernel for these tensors.</summary>
    public bool Applies(Tensor x, Tensor w, Tensor? b)
    {
        if (!SmallRows || w.dim() != 2 || x.dim() < 1) return false;
        if (x.dtype != ScalarType.Float32 || w.dtype != ScalarType.Float32 || x.device_type != DeviceType.CPU || w.device_type != DeviceType.CPU) return false;
        if (!w.is_contiguous() || b is not null && (b.dtype != ScalarType.Float32 || !b.is_contiguous() || b.device_type != DeviceType.CPU)) return false;
        long k = w.shape[1];
        if (k == 0 || x.shape[^1] != k) return false; // nn.functional.linear reports the mismatch
        long m = x.numel() / k;
        if (m < 1 || m > MaxRows) return false;
        return !is_grad_enabled() || !(x.requires_grad || w.requires_grad || b is not null && b.requires_grad);
    }

    /// <summary>
    /// Decode mode for the steps of a generation with <paramref name="rows"/> sequences on the calling thread (disposing
    /// the result ends it): libtorch runs on one thread, and the kernel takes every linear of up to DecodeMaxRows rows
    /// and splits it over the intra-op thread count with its own spinning workers. A decode step is almost all linears
    /// of few rows; the rest (norms, rotary, attention over the cache) is too small for libtorch to parallelise anyway.
    /// Measured on the bench sizes (2 cores): a batch-32 step 41–45 → 29–33 ms, a batch-1 step 9–13 → 7.5–8 ms.
    /// A no-op scope when the kernel is off, there is one thread, there are more rows, or another thread is decoding;
    /// opening it twice on one thread throws.
    /// </summary>
    public IDisposable Decoding(long rows)
    {
        int me = Environment.CurrentManagedThreadId;
        if (decodingThread == me || Volatile.Read(ref decodeOwnerThread) == me)
            throw new InvalidOperationException("decode mode is already open on this thread (a generation inside a generation)");
        int threads = get_num_threads();
        if (!SmallRows || threads <= 1 || rows > DecodeMaxRows) return NoScope.Instance;
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
