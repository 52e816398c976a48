using NUnit.Framework;
using TorchSharp;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Tests.Model;

/// <summary>The small-batch fp32 kernel against nn.functional.linear (the reference), on shapes that hit every tail, and the kernel choice of LinearKernels.</summary>
public class LinearKernelsTests
{
    // Forced on and available on every CPU: without AVX-512 .NET computes Vector512 in software (the same arithmetic),
    // so these checks run everywhere rather than only where the kernel is fast.
    private readonly LinearKernels kernels = new(KernelChoice.SmallRows, null, available: true);

    [TestCase(1, 64, 32)]
    [TestCase(1, 512, 1000)]   // a decode step's lm_head
    [TestCase(3, 100, 7)]      // K not a multiple of 16, N not a multiple of 4, rows < 4
    [TestCase(4, 17, 4)]
    [TestCase(5, 1408, 512)]   // one 4-row block and a leftover row
    [TestCase(8, 33, 9)]
    [TestCase(2, 5, 3)]        // K below one vector
    public void Equals_linear_with_and_without_bias(int m, int k, int n)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var g = new Generator(42);
        var x = randn([m, k], generator: g);
        var w = randn([n, k], generator: g) * 0.1;
        var b = randn([n], generator: g);
        Assert.That(kernels.Applies(x, w, b), Is.True);
        foreach (var bias in new[] { null, b })
        {
            var expected = nn.functional.linear(x, w, bias);
            var got = SmallRowKernel.Forward(x, w, bias);
            Assert.That(got.shape, Is.EqualTo(expected.shape));
            double tol = 1e-5 * Math.Sqrt(k) * (1 + expected.abs().max().ToSingle());
            Assert.That((got - expected).abs().max().ToSingle(), Is.LessThan(tol), $"m {m} k {k} n {n} bias {bias is not null}");
        }
    }

    [Test]
    public void Keeps_leading_dimensions_and_reads_non_contiguous_input()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var w = randn(12, 40);
        var x = randn(40, 2, 1).permute(1, 2, 0); // [2, 1, 40], not contiguous
        Assert.That(x.is_contiguous(), Is.False);
        var got = SmallRowKernel.Forward(x, w, null);
        Assert.That(got.shape, Is.EqualTo(new long[] { 2, 1, 12 }));
        Assert.That((got - nn.functional.linear(x, w)).abs().max().ToSingle(), Is.LessThan(1e-4));
    }

    [Test]
    public void Decode_mode_splits_across_threads_with_the_same_results_and_restores_the_thread_count()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        int threads = get_num_threads();
        var g = new Generator(3);
        var w = randn([1000, 520], generator: g) * 0.1;
        var b = randn([1000], generator: g);
        var inputs = new[] { 1, 5, 32, 64 }.Select(m => randn([m, 520], generator: g)).ToArray();
        using (kernels.Decoding(64))
        {
            if (threads > 1) Assert.That(get_num_threads(), Is.EqualTo(1), "libtorch runs on one thread while decoding");
            foreach (var x in inputs)
            {
                Assert.That(kernels.Applies(x, w, b), Is.True, $"{x.shape[0]} rows");
                var diff = (kernels.Linear(x, w, b) - nn.functional.linear(x, w, b)).abs().max().ToSingle();
                Assert.That(diff, Is.LessThan(1e-3), $"{x.shape[0]} rows");
            }
        }
        Assert.That(get_num_threads(), Is.EqualTo(threads));
        Assert.That(kernels.Applies(inputs[2], w, b), Is.False, "32 rows go back to libtorch outside decode mode");
        using (kernels.Decoding(LinearKernels.DecodeMaxRows + 1)) Assert.That(get_num_threads(), Is.EqualTo(threads), "too many rows: no decode mode");
    }

    [Test]
    public void Does_not_apply_where_libtorch_must_run()
    {
        using var scope = NewDisposeScope();
        var w = randn(8, 16);
        using (no_grad())
        {
            Assert.That(kernels.Applies(randn(kernels.MaxRows + 1, 16), w, null), Is.False, "too many rows");
            Assert.That(kernels.Applies(randn(1, 16, dtype: ScalarType.Float64), w.to_type(ScalarType.Float64), null), Is.False, "fp64");
            Assert.That(kernels.Applies(randn(1, 15), w, null), Is.False, "K mismatch is left to linear's message");
            Assert.That(kernels.Applies(randn(1, 8), randn(16, 8).t(), null), Is.False, "non-contiguous weight");
        }
        // with autograd on and an input that needs a gradient, the graph must be recorded by libtorch
        var xg = randn(1, 16).requires_grad_(true);
        Assert.That(kernels.Applies(xg, w, null), Is.False);
        var lin = new KernelLinear(16, 8, true, kernels);
        var y = lin.call(xg);
        y.sum().backward();
        Assert.That(xg.grad, Is.Not.Null);
    }

    [Test]
    public void Decode_mode_cannot_be_opened_twice_on_one_thread_and_another_thread_runs_without_it()
    {
        int threads = get_num_threads();
        if (threads < 2) set_num_threads(2);   // decode mode needs a second thread to hand to the kernel
        var other = new LinearKernels();
        try
        {
        using (kernels.Decoding(8))
        {
            Assert.Throws<InvalidOperationException>(() => kernels.Decoding(8));
            Assert.Throws<InvalidOperationException>(() => other.Decoding(8), "one decode mode per process: libtorch's thread count is process-wide");
            bool inOther = true;
            var t = new Thread(() => { using (kernels.Decoding(8)) inOther = kernels.InDecodeMode; });
            t.Start(); t.Join();
            Assert.That(inOther, Is.False, "a second thread decodes without decode mode");
            Assert.That(kernels.InDecodeMode, Is.True);
        }
        Assert.That(kernels.InDecodeMode, Is.False);
        }
        finally { set_num_threads(threads); }
    }

    [Test]
    public void A_linear_layer_chooses_the_kernel_in_its_own_forward()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var small = new KernelLinear(40, 12, true, kernels);
        var plain = new KernelLinear(40, 12, true, LinearKernels.LibtorchOnly);
        plain.weight = small.weight;
        plain.bias = small.bias;
        var x = randn(3, 40);
        Assert.That(kernels.Applies(x, small.weight, small.bias), Is.True);
        Assert.That(LinearKernels.LibtorchOnly.Applies(x, small.weight, small.bias), Is.False);
        var expected = nn.functional.linear(x, small.weight, small.bias);
        Assert.That((plain.call(x) - expected).abs().max().ToSingle(), Is.EqualTo(0f), "libtorch-only is nn.functional.linear");
        Assert.That((small.call(x) - expected).abs().max().ToSingle(), Is.LessThan(1e-4f));
    }
}
