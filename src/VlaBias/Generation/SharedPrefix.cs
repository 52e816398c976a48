// Prompts about one image share everything up to and including the image tokens (BOS, the template's start, soft-prompt
// positions, the image), and often more: every probe of a Girrbach-style suite begins "is the person". Here the longest
// prefix all prompts of a batch share (at least through the last image token) runs once per image and every prompt
// continues from its keys and values (Model/PrefixCache.cs), in one batch:
//   prefix ids [G, P] + image features [G, N, C] → PrefixCache (one row per image)
//   suffixes left-padded to [B, T], key mask [B, P + T] = ones over the prefix, then the suffix mask (padding sits
//   between prefix and the rest, masked out; position ids count real tokens, so they continue at P as in the full
//   prompt) → logits [B, V] of each row's last position.
// Results equal a full-prompt batch up to float rounding. Split says when prompts can share (the same ids through the
// image, something after the prefix in each, no image or soft-prompt tokens after it); callers fall back to full
// prompts otherwise. Runs under the caller's grad mode: in training, gradients flow through the shared prefix.
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Generation;

public static class SharedPrefix
{
    /// <summary>
    /// The length P of the longest prefix all <paramref name="prompts"/> share, reaching at least through the last image
    /// token and leaving at least one token of each prompt after it, or null when they cannot share one (a difference
    /// before the image's end, a prompt ending with the image, image or soft-prompt tokens after the prefix).
    /// </summary>
    public static int? Split(IReadOnlyList<int[]> prompts, long imageTokenId)
    {
        if (prompts.Count == 0) return null;
        var first = prompts[0];
        int image = Array.LastIndexOf(first, (int)imageTokenId) + 1;
        if (image == 0) return null;
        int p = first.Length - 1;
        foreach (var ids in prompts)
            p = Math.Min(p, Math.Min(ids.Length - 1, first.AsSpan(0, Math.Min(p, ids.Length)).CommonPrefixLength(ids)));
        if (p < image) return null;
        foreach (var ids in prompts)
            for (int i = p; i < ids.Length; i++)
                if (ids[i] == imageTokenId || ids[i] == LlavaModel.VirtualTokenId) return null;
        return p;
    }

    /// <summary>
    /// Logits [B, V] of the last position of every prompt, the first <paramref name="prefixLength"/> ids (the shared
    /// prefix, see <see cref="Split"/>) computed once per image: <paramref name="prefixFeatures"/> [G, N, C] are the G
    /// images, <paramref name="prefixOfRow"/>[b] the image of prompt b. <paramref name="virtualTokens"/> are the
    /// soft-prompt rows of the prefix, if any.
    /// </summary>
    public static Tensor LastLogits(LlavaModel model, IReadOnlyList<int[]> prompts, int prefixLength, Tensor prefixFeatures,
        IReadOnlyList<long> prefixOfRow, int padId, Tensor? virtualTokens = null)
    {
        if (prefixOfRow.Count != prompts.Count) throw new ArgumentException($"{prompts.Count} prompts but {prefixOfRow.Count} prefix rows", nameof(prefixOfRow));
        using var scope = NewDisposeScope();
        long g = prefixFeatures.shape[0], b = prompts.Count;
        var prefix = tensor(prompts[0].Take(prefixLength).Select(t => (long)t).ToArray()).unsqueeze(0).repeat(g, 1);
        using var cache = new PrefixCache(model.Config.Text.NumHiddenLayers);
        model.call(new ModelInput
        {
            InputIds = prefix, ImageFeatures = prefixFeatures, VirtualTokens = virtualTokens, Cache = cache, Logits = LogitsMode.None,
        });
        cache.Reorder(tensor(prefixOfRow.ToArray()));
        using var suffix = Batch.LeftPadded(prompts.Select(p => p[prefixLength..]).ToList(), padId, null, model.DType);
        var mask = cat([ones(b, prefixLength, dtype: ScalarType.Int64), suffix.Mask], 1);
        return model.call(new ModelInput
        {
            InputIds = suffix.InputIds, Mask = mask, Cache = cache, Start = prefixLength, Logits = LogitsMode.Last,
        }).LastLogits.MoveToOuterDisposeScope();
    }
}
