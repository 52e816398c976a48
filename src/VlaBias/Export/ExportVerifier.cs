// `vlatune export --verify`: runs TorchSharp and ONNX Runtime on the same images and prompt and checks that
// they agree. Per image: max |Δlogit| over the whole prefill and over each cached decode step (both engines fed the
// same tokens, TorchSharp's greedy continuation at full length), and the two greedy captions token by token. One more
// row runs all images as a single left-padded batch (prompts may differ in length), which exercises the padding mask
// and position ids.
using Serilog;
using VlaBias.Data;
using VlaBias.Generation;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Export;

/// <summary>One compared item: the largest logit differences and whether the greedy captions are token-identical.</summary>
public sealed record VerificationRow(string Item, double PrefillMaxAbsDiff, double DecodeMaxAbsDiff, int DecodeSteps,
    bool TokensIdentical, string TorchCaption, string OnnxCaption)
{
    public double MaxAbsDiff => Math.Max(PrefillMaxAbsDiff, DecodeMaxAbsDiff);
}

public sealed record VerificationResult(IReadOnlyList<VerificationRow> Rows, double Tolerance)
{
    public double MaxAbsDiff => Rows.Count == 0 ? 0 : Rows.Max(r => r.MaxAbsDiff);
    public bool TokensIdentical => Rows.All(r => r.TokensIdentical);
    public bool Passed => MaxAbsDiff <= Tolerance && TokensIdentical;
}

public static class ExportVerifier
{
    public const double DefaultTolerance = 1e-4;

    /// <summary>Compares <paramref name="torchModel"/> with the export in <paramref name="exportDir"/> on each image (one prompt).</summary>
    public static VerificationResult Verify(Vla torchModel, string exportDir, IReadOnlyList<Tensor> images, string prompt,
        int decodeSteps = 12, double tolerance = DefaultTolerance) =>
        Verify(torchModel, exportDir, images.Select(i => (i, prompt)).ToList(), decodeSteps, tolerance);

    /// <summary>Compares on (image, prompt) items, one row each, plus a row for all items as one left-padded batch.</summary>
    public static VerificationResult Verify(Vla torchModel, string exportDir, IReadOnlyList<(Tensor image, string prompt)> items,
        int decodeSteps = 12, double tolerance = DefaultTolerance)
    {
        using var onnx = OnnxVla.Load(exportDir);
        var rows = new List<VerificationRow>();
        for (int i = 0; i < items.Count; i++)
            rows.Add(Compare(torchModel, onnx, $"image {i}", [items[i]], decodeSteps));
        if (items.Count > 1) rows.Add(Compare(torchModel, onnx, $"batch of {items.Count}", items, decodeSteps));
        return new VerificationResult(rows, tolerance);
    }

    private static VerificationRow Compare(Vla vla, OnnxVla onnx, string name, IReadOnlyList<(Tensor image, string prompt)> items, int steps)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var ids = items.Select(x => vla.PromptIds(x.prompt)).ToList();
        using var batch = vla.Batch(ids, items.Select(x => x.image).ToList());
        var torch = new TorchEngine(vla);

        // The whole prefill, then cached decode steps of both engines fed the same tokens: TorchSharp's greedy
        // continuation forced to the full length (the stop token is not chosen before it).
        var fed = new TextGenerator(torch).Generate(batch, new GenerationOptions(steps, MinNewTokens: steps));
        double prefill = MaxAbsDiff(vla.Model.call(batch.Input()).Logits!.to_type(ScalarType.Float32), onnx.Logits(batch));
        double decode = 0;
        using (var t = torch.Prefill(batch, steps, out _))
        using (var o = onnx.Prefill(batch, steps, out _))
            for (int step = 0; step < steps; step++)
            {
                var tokens = fed.Select(g => (long)g.Tokens[step]).ToArray();
                decode = Math.Max(decode, MaxAbsDiff(t.Step(tokens).to_type(ScalarType.Float32), o.Step(tokens)));
            }

        // Greedy captions, each engine on its own.
        var options = GenerationOptions.Greedy(steps);
        var torchOut = new TextGenerator(vla).Generate(batch, options);
        var onnxOut = new TextGenerator(onnx).Generate(batch, options);
        bool same = torchOut.Zip(onnxOut).All(p => p.First.Tokens.SequenceEqual(p.Second.Tokens));
        return new VerificationRow(name, prefill, decode, steps, same,
            string.Join(" | ", torchOut.Select(g => g.Text)), string.Join(" | ", onnxOut.Select(g => g.Text)));
    }

    /// <summary>
    /// Up to <paramref name="count"/> test-split images of <paramref name="manifest"/> (by id), preprocessed for the
    /// model; random images in its normalized pixel space (seed 0) when the manifest is missing or of another image size.
    /// </summary>
    public static List<Tensor> TestImages(Vla vla, string manifest, int count)
    {
        if (File.Exists(manifest))
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(manifest))!;
            var items = Manifest.Load(manifest).Where(i => i.Split == Split.Test).OrderBy(i => i.Id, StringComparer.Ordinal).Take(count).ToList();
            var pics = items.Select(i => vla.Images.Load(Path.Combine(dir, i.Image))).ToList();
            if (pics.Count > 0 && pics[0].shape[1] == vla.Config.Vision.ImageSize) return pics;
        }
        Log.Information("export: verifying on {Count} random images (no usable manifest at {Manifest})", count, manifest);
        manual_seed(0);
        return Enumerable.Range(0, count).Select(_ => randn(3, vla.Config.Vision.ImageSize, vla.Config.Vision.ImageSize)).ToList();
    }

    private static double MaxAbsDiff(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape))
            throw new InvalidOperationException($"logit shapes differ: [{string.Join(", ", a.shape)}] vs [{string.Join(", ", b.shape)}]");
        return (a - b.to(a.device)).abs().max().item<float>();
    }
}
