// The TorchSharp engines of the decoder. TorchEngine: prefill writes the prompt's keys and values into a preallocated
// KV cache (capacity prompt + new tokens) and every step feeds one token per row at the next cache column, inside the
// model's decode mode (LinearKernels.Decoding: small-row kernel on all cores) which this engine owns for the steps.
// RecomputeEngine: no cache; every step runs the whole sequence so far (the reference the cached engine must equal).
// Both compute image features once, run lm_head on the last position only, and keep the batch's mask per row.
using TorchSharp;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Generation;

public sealed class TorchEngine(Vla vla) : IEngine
{
    public PromptFormat Prompts => vla.Prompts;

    public Batch Batch(IReadOnlyList<int[]> sequences, IReadOnlyList<Tensor>? pixels) => vla.Batch(sequences, pixels);

    public Tensor LastLogits(Batch batch) => vla.Model.call(batch.Input(LogitsMode.Last)).LastLogits;

    public IDecoding Prefill(Batch batch, int maxNewTokens, out Tensor lastLogits)
    {
        var model = vla.Model;
        long b = batch.Size, len = batch.Length;
        var cache = model.NewCache(b, len + maxNewTokens);
        var mask = cat([batch.Mask, ones(b, maxNewTokens, dtype: ScalarType.Int64)], 1).DetachFromDisposeScope();   // [B, L + maxNew]
        try
        {
            lastLogits = model.call(batch.Input(LogitsMode.Last) with { Mask = mask.narrow(1, 0, len), Cache = cache }).LastLogits;
        }
        catch { cache.Dispose(); mask.Dispose(); throw; }
        return new Cached(model, cache, mask, len);
    }

    private sealed class Cached : IDecoding
    {
        private readonly LlavaModel model;
        private readonly IKvCache cache;
        private Tensor mask;
        private long position;          // cache column of the next token
        private IDisposable decodeMode;

        public Cached(LlavaModel model, IKvCache cache, Tensor mask, long position)
        {
            this.model = model; this.cache = cache; this.mask = mask; this.position = position;
            decodeMode = model.Kernels.Decoding(cache.Batch);
        }

        public Tensor Step(long[] tokens)
        {
            var feed = tensor(tokens).unsqueeze(1);
            var input = new ModelInput { InputIds = feed, Mask = mask.narrow(1, 0, position + 1), Cache = cache, Start = position, Logits = LogitsMode.Last };
            var logits = model.call(input).LastLogits;
            position++;
            return logits;
        }

        public void Reorder(long[] rows)
        {
            bool resized = rows.Length != cache.Batch;
            using (var scope = NewDisposeScope())
            {
                var index = tensor(rows);
                cache.Reorder(index);
                var kept = mask.index_select(0, index).DetachFromDisposeScope();
                mask.Dispose();
                mask = kept;
            }
            if (resized)
            {
                // decode mode is sized by the rows it serves (beam search widens B inputs to B·K rows)
                decodeMode.Dispose();
                decodeMode = model.Kernels.Decoding(rows.Length);
            }
        }

        public void Dispose()
        {
            decodeMode.Dispose();
            cache.Dispose();
            mask.Dispose();
        }
    }
}

public sealed class RecomputeEngine(Vla vla) : IEngine
{
    public PromptFormat Prompts => vla.Prompts;

    public Batch Batch(IReadOnlyList<int[]> sequences, IReadOnlyList<Tensor>? pixels) => vla.Batch(sequences, pixels);

    public Tensor LastLogits(Batch batch) => vla.Model.call(batch.Input(LogitsMode.Last)).LastLogits;

    public IDecoding Prefill(Batch batch, int maxNewTokens, out Tensor lastLogits)
    {
        var features = batch.ImageFeatures ?? (batch.Pixels is null ? null : vla.Model.ImageFeatures(batch.Pixels).DetachFromDisposeScope());
        var state = new Recomputed(vla.Model, batch.InputIds.clone().DetachFromDisposeScope(), batch.Mask.clone().DetachFromDisposeScope(),
            features, ownsFeatures: batch.ImageFeatures is null && features is not null, batch.VirtualTokens);
        lastLogits = state.Forward();
        return state;
    }

    private sealed class Recomputed(LlavaModel model, Tensor ids, Tensor mask, Tensor? features, bool ownsFeatures, Tensor? virtualTokens) : IDecoding
    {
        public Tensor Forward() => model.call(new ModelInput
        {
            InputIds = ids, Mask = mask, ImageFeatures = features, VirtualTokens = virtualTokens, Logits = LogitsMode.Last,
        }).LastLogits;

        public Tensor Step(long[] tokens)
        {
            long b = ids.shape[0];
            var newIds = cat([ids, tensor(tokens).unsqueeze(1)], 1).DetachFromDisposeScope();
            var newMask = cat([mask, ones(b, 1, dtype: ScalarType.Int64)], 1).DetachFromDisposeScope();
            ids.Dispose(); mask.Dispose();
            ids = newIds; mask = newMask;
            return Forward();
        }

        public void Reorder(long[] rows)
        {
            using var scope = NewDisposeScope();
            var index = tensor(rows);
            long b = ids.shape[0];
            if (features is not null)
            {
                // features are spliced in row order: reordering rows needs the same number of images in every row
                var perRow = ids.eq(model.Config.ImageTokenIndex).sum(1);
                long n = features.shape[0] * features.shape[1];
                if (n % b != 0 || perRow.ne(n / b).any().ToBoolean())
                    throw new InvalidOperationException("beam search without a KV cache needs the same number of images in every row");
                var kept = features.reshape(b, n / b, features.shape[2]).index_select(0, index).reshape(-1, features.shape[1], features.shape[2]).DetachFromDisposeScope();
                if (ownsFeatures) features.Dispose();
                features = kept;
                ownsFeatures = true;
            }
            var newIds = ids.index_select(0, index).DetachFromDisposeScope();
            var newMask = mask.index_select(0, index).DetachFromDisposeScope();
            ids.Dispose(); mask.Dispose();
            ids = newIds; mask = newMask;
        }

        public void Dispose()
        {
            ids.Dispose(); mask.Dispose();
            if (ownsFeatures) features?.Dispose();
        }
    }
}
