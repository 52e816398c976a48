// Captions image files with any engine through the one decoder: files are loaded and preprocessed in batches of
// batchSize, a file that cannot be read is reported in its result (the others are still captioned), every image gets
// the same instruction (default: the engine's caption prompt) and the results come back in file order.
using VlaBias.Images;
using static TorchSharp.torch;

namespace VlaBias.Generation;

/// <summary>One file's caption, or why it has none (the BadInputException message naming the file).</summary>
public sealed record CaptionResult(string File, Generated? Caption, string? Error);

public sealed class Captioner(IEngine engine, ImagePreprocessor images, TokenPenalty? penalty = null)
{
    private readonly TextGenerator generator = new(engine);

    public IEnumerable<CaptionResult> CaptionFiles(IReadOnlyList<string> files, string? prompt, GenerationOptions options, int batchSize = 16)
    {
        int bs = Math.Max(1, batchSize);
        for (int start = 0; start < files.Count; start += bs)
        {
            var chunk = files.Skip(start).Take(bs).ToList();
            var results = new CaptionResult[chunk.Count];
            var loaded = new List<(int index, Tensor pixels)>();
            for (int i = 0; i < chunk.Count; i++)
            {
                try { loaded.Add((i, images.Load(chunk[i]))); }
                catch (BadInputException e) { results[i] = new CaptionResult(chunk[i], null, e.Message); }
            }
            if (loaded.Count > 0)
            {
                try
                {
                    var captions = Caption(loaded.Select(x => x.pixels).ToList(), prompt, options);
                    for (int j = 0; j < loaded.Count; j++) results[loaded[j].index] = new CaptionResult(chunk[loaded[j].index], captions[j], null);
                }
                finally { foreach (var (_, px) in loaded) px.Dispose(); }
            }
            foreach (var r in results) yield return r;
        }
    }

    /// <summary>Captions preprocessed images [3, H, W], one instruction for all (default: the engine's caption prompt).</summary>
    public IReadOnlyList<Generated> Caption(IReadOnlyList<Tensor> pixels, string? prompt, GenerationOptions options)
    {
        var ids = engine.Prompts.Ids(prompt ?? engine.Prompts.CaptionPrompt);
        using var batch = engine.Batch(pixels.Select(_ => ids).ToList(), pixels);
        return generator.Generate(batch, options, penalty);
    }
}
