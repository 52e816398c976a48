// The images of a list of manifest items, decoded and preprocessed once into one tensor [N, 3, H, W] (row i is item
// i), so training steps, evaluation batches and steering builds select rows instead of reading files again.
using VlaBias.Data;
using static TorchSharp.torch;

namespace VlaBias.Images;

/// <summary>All images of a manifest subset, preprocessed once; row i is item i.</summary>
public sealed class ImageBank : IDisposable
{
    private ImageBank(Tensor pixels, IReadOnlyList<ManifestItem> items) { Pixels = pixels; Items = items; }

    public Tensor Pixels { get; }                 // [N, 3, H, W] float32
    public IReadOnlyList<ManifestItem> Items { get; }
    public int Count => Items.Count;

    public static ImageBank Load(IReadOnlyList<ManifestItem> items, string manifestDir, ImagePreprocessor pre, IProgress<int>? progress = null)
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
