// Turning manifest items into model inputs for training: images are decoded once into an ImageBank (one tensor
// [N, 3, H, W]); each (image, prompt, target) example becomes [BOS] template(prompt, image tokens) target </s>,
// left-padded into a batch whose labels are the next token on target positions and -100 elsewhere.
using VlaBias.Data;
using static TorchSharp.torch;

namespace VlaBias.Training;

/// <summary>One supervised example: the image (row of the bank), the prompt, the answer/caption to learn.</summary>
public sealed record TextExample(int Image, string Prompt, string Target, string Kind);

/// <summary>All images of a manifest subset, preprocessed once; row i is item i.</summary>
public sealed class ImageBank : IDisposable
{
    private ImageBank(Tensor pixels, IReadOnlyList<ManifestItem> items) { Pixels = pixels; Items = items; }

    public Tensor Pixels { get; }                 // [N, 3, H, W] float32
    public IReadOnlyList<ManifestItem> Items { get; }
    public int Count => Items.Count;

    public static ImageBank Load(IReadOnlyList<ManifestItem> items, string manifestDir, Images.ImagePreprocessor pre, IProgress<int>? progress = null)
    {
        var rows = new Tensor[items.Count];
        int done = 0;
        Parallel.For(0, items.Count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, Environment.ProcessorCount) }, i =>
        {
            var t = pre.Load(Path.Combine(manifestDir, items[i].Image));
            t.DetachFromDisposeScope();
            rows[i] = t;
            int d = Interlocked.Increment(ref done);
            if (d % 256 == 0) progress?.Report(d);
        });
        var stacked = stack(rows).DetachFromDisposeScope();
        foreach (var r in rows) r.Dispose();
        return new ImageBank(stacked, items);
    }

    public Tensor Select(IReadOnlyList<int> rows) => Pixels.index_select(0, tensor(rows.Select(r => (long)r).ToArray()));

    public void Dispose() => Pixels.Dispose();
}

/// <summary>A padded batch for teacher forcing: ids [B, L], mask [B, L], labels [B, L] (-100 = no loss), pixels.</summary>
public sealed record SequenceBatch(Tensor InputIds, Tensor Mask, Tensor Labels, Tensor? Pixels) : IDisposable
{
    public void Dispose() { InputIds.Dispose(); Mask.Dispose(); Labels.Dispose(); Pixels?.Dispose(); }
}

public static class Sequences
{
    public const long IgnoreIndex = -100;

    /// <summary>
    /// Builds a left-padded teacher-forcing batch. labels[b, t] is the token at t+1 when that token belongs to the
    /// target (caption or answer plus the stop token), so logits[b, t] are scored against labels[b, t].
    /// </summary>
    public static SequenceBatch Build(Vla vla, IReadOnlyList<(int[] prompt, int[] target)> rows, Tensor? pixels)
    {
        int eos = vla.Tokenizer.EosId;
        var seqs = rows.Select(r => r.prompt.Concat(r.target).Append(eos).ToArray()).ToList();
        int len = seqs.Max(s => s.Length);
        int b = rows.Count;
        var ids = new long[b * len];
        var mask = new long[b * len];
        var labels = new long[b * len];
        Array.Fill(labels, IgnoreIndex);
        for (int r = 0; r < b; r++)
        {
            var s = seqs[r];
            int pad = len - s.Length;
            int targetStart = pad + rows[r].prompt.Length;      // index of the first target token
            for (int i = 0; i < len; i++)
            {
                bool real = i >= pad;
                ids[r * len + i] = real ? s[i - pad] : vla.Tokenizer.PadId;
                mask[r * len + i] = real ? 1 : 0;
                if (i + 1 >= targetStart && i + 1 < len) labels[r * len + i] = s[i + 1 - pad];
            }
        }
        return new SequenceBatch(tensor(ids, [b, len]), tensor(mask, [b, len]), tensor(labels, [b, len]), pixels);
    }

    /// <summary>Mean cross-entropy of logits [B, L, V] against labels [B, L] (ignoring -100).</summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor labels) =>
        nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]).to_type(ScalarType.Float32), labels.reshape(-1), ignore_index: IgnoreIndex);
}

public static class LearningRate
{
    /// <summary>Linear warmup to <paramref name="peak"/> over <paramref name="warmup"/> steps, then cosine to minRatio·peak at <paramref name="total"/>.</summary>
    public static double WarmupCosine(long step, long warmup, long total, double peak, double minRatio = 0.1)
    {
        if (warmup > 0 && step < warmup) return peak * (step + 1) / warmup;
        if (total <= warmup) return peak;
        double progress = Math.Min(1.0, (double)(step - warmup) / Math.Max(1, total - warmup));
        return peak * (minRatio + (1 - minRatio) * 0.5 * (1 + Math.Cos(Math.PI * progress)));
    }

    public static double Constant(long step, long warmup, double peak) => warmup > 0 && step < warmup ? peak * (step + 1) / warmup : peak;
}
