// The batch every generator, scorer and objective feeds the model: token sequences left-padded to one length, with
// their mask, the images, and for teacher forcing the labels. A prompt batch has no labels; a teacher-forced batch is
// [BOS] template(prompt, image tokens) target </s> per row, whose labels are the next token on target positions and
// -100 elsewhere (so logits[b, t] are scored against labels[b, t]). The batch owns its tensors except the soft-prompt
// rows, which belong to the soft prompt.
using static TorchSharp.torch;

namespace VlaBias.Model;

/// <summary>
/// Left-padded token ids [B, L], their mask [B, L] (1 = real), the images: pixel values [B_img, 3, H, W], or image
/// features already computed by <see cref="LlavaModel.ImageFeatures"/> (reused across prompts about one image); labels
/// [B, L] for teacher forcing; soft-prompt rows [N_v, C] for the VirtualTokenId positions.
/// </summary>
public sealed record Batch(Tensor InputIds, Tensor Mask, Tensor? Pixels = null, Tensor? ImageFeatures = null, Tensor? Labels = null,
    Tensor? VirtualTokens = null) : IDisposable
{
    /// <summary>The label of positions that are not scored.</summary>
    public const long IgnoreIndex = -100;

    public long Size => InputIds.shape[0];
    public long Length => InputIds.shape[1];

    /// <summary>The model input of this batch (labels included: the loss comes back with all logits).</summary>
    public ModelInput Input(LogitsMode logits = LogitsMode.All) => new()
    {
        InputIds = InputIds, Mask = Mask, Pixels = Pixels, ImageFeatures = ImageFeatures, VirtualTokens = VirtualTokens,
        Labels = logits == LogitsMode.All ? Labels : null, Logits = logits,
    };

    public void Dispose() { InputIds.Dispose(); Mask.Dispose(); Labels?.Dispose(); Pixels?.Dispose(); ImageFeatures?.Dispose(); }

    /// <summary>Left-pads token sequences with <paramref name="padId"/>; <paramref name="pixels"/> are stacked in row order.</summary>
    public static Batch LeftPadded(IReadOnlyList<int[]> sequences, int padId, IReadOnlyList<Tensor>? pixels, ScalarType dtype,
        Tensor? features = null, Tensor? virtualTokens = null)
    {
        int len = sequences.Max(s => s.Length);
        var ids = new long[sequences.Count * len];
        var mask = new long[sequences.Count * len];
        for (int b = 0; b < sequences.Count; b++)
        {
            int pad = len - sequences[b].Length;
            for (int i = 0; i < len; i++)
            {
                bool real = i >= pad;
                ids[b * len + i] = real ? sequences[b][i - pad] : padId;
                mask[b * len + i] = real ? 1 : 0;
            }
        }
        Tensor? px = pixels is { Count: > 0 } ? stack(pixels).to_type(dtype) : null;
        return new Batch(tensor(ids, [sequences.Count, len]), tensor(mask, [sequences.Count, len]), px, features, null, virtualTokens);
    }

    /// <summary>
    /// A left-padded teacher-forcing batch of prompt + target + <paramref name="eosId"/> per row. labels[b, t] is the
    /// token at t+1 when that token belongs to the target (caption or answer plus the stop token).
    /// </summary>
    public static Batch TeacherForced(IReadOnlyList<(int[] prompt, int[] target)> rows, int padId, int eosId, Tensor? pixels = null,
        Tensor? features = null, Tensor? virtualTokens = null)
    {
        var seqs = rows.Select(r => r.prompt.Concat(r.target).Append(eosId).ToArray()).ToList();
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
                ids[r * len + i] = real ? s[i - pad] : padId;
                mask[r * len + i] = real ? 1 : 0;
                if (i + 1 >= targetStart && i + 1 < len) labels[r * len + i] = s[i + 1 - pad];
            }
        }
        return new Batch(tensor(ids, [b, len]), tensor(mask, [b, len]), pixels, features, tensor(labels, [b, len]), virtualTokens);
    }
}
