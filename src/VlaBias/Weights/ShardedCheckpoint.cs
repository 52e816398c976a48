// A checkpoint folder in Hugging Face's layout. In: a folder. Out: tensor name -> the open file holding it.
//
// One file (model.safetensors) or shards listed by an index (model.safetensors.index.json):
//   {"metadata": {"total_size": <bytes of tensor data>}, "weight_map": {tensor name: shard file name}}
// and the same as PyTorch pickles: pytorch_model.bin or pytorch_model.bin.index.json with .bin shards (read through
// PyTorchBinFile). Like transformers, the first present of model.safetensors, its index, pytorch_model.bin and its
// index is used, so safetensors wins when both are there.
using System.Text.Json;

namespace VlaBias.Weights;

public static class ShardedCheckpoint
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";
    public const string BinFileName = "pytorch_model.bin";
    public const string BinIndexFileName = "pytorch_model.bin.index.json";

    /// <summary>
    /// Opens every file of the checkpoint and validates it. Several names map to the same file; the caller owns the
    /// files and disposes each distinct one (<c>map.Values.Distinct()</c>).
    /// </summary>
    public static IReadOnlyDictionary<string, ITensorFile> OpenFolder(string dir)
    {
        if (!Directory.Exists(dir))
            throw new BadInputException($"{dir}: checkpoint folder does not exist");

        foreach (var (singleName, indexName) in new[] { (SingleFileName, IndexFileName), (BinFileName, BinIndexFileName) })
        {
            string single = Path.Combine(dir, singleName);
            if (File.Exists(single))
            {
                var file = TensorFile.Open(single);
                return file.Shapes.Keys.ToDictionary(name => name, _ => file, StringComparer.Ordinal);
            }
            string index = Path.Combine(dir, indexName);
            if (File.Exists(index)) return OpenShards(dir, index);
        }
        throw new BadInputException($"{dir}: checkpoint folder has none of {SingleFileName}, {IndexFileName}, {BinFileName}, {BinIndexFileName}");
    }

    private static Dictionary<string, ITensorFile> OpenShards(string dir, string index)
    {
        var weightMap = ReadWeightMap(index);
        var shards = new Dictionary<string, ITensorFile>(StringComparer.Ordinal);
        try
        {
            var result = new Dictionary<string, ITensorFile>(weightMap.Count, StringComparer.Ordinal);
            foreach (var (tensor, shardName) in weightMap)
            {
                if (!shards.TryGetValue(shardName, out var shard))
                {
                    string shardPath = Path.Combine(dir, shardName);
                    if (!File.Exists(shardPath))
                        throw new BadInputException($"{index}: shard {ErrorText.Quote(shardName)} (holding tensor {ErrorText.Quote(tensor)}) " +
                                                    $"is missing from {dir}");
                    shard = TensorFile.Open(shardPath);
                    shards.Add(shardName, shard);
                }
                if (!shard.Shapes.ContainsKey(tensor))
                    throw new BadInputException($"{index}: tensor {ErrorText.Quote(tensor)} is listed in shard {ErrorText.Quote(shardName)} " +
                                                $"but {shard.Path} does not contain it");
                result.Add(tensor, shard);
            }
            return result;
        }
        catch
        {
            foreach (var shard in shards.Values) shard.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Saves the tensors as model.safetensors when they fit in one shard of <paramref name="maxShardBytes"/>, else as
    /// shards plus an index, split like huggingface_hub (in dictionary order, a new shard when the next tensor would
    /// overflow the current one, a tensor larger than the limit alone in its shard). Each file is written atomically;
    /// the index is written after the shards, and files of an earlier save that the new one does not use are removed
    /// last. Every shard carries <paramref name="metadata"/>, by default {"format": "pt"} as transformers writes.
    /// </summary>
    public static void SaveFolder(string dir, IReadOnlyDictionary<string, TorchSharp.torch.Tensor> tensors, long maxShardBytes = 5_000_000_000,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        metadata ??= new Dictionary<string, string> { ["format"] = "pt" };
        Directory.CreateDirectory(dir);

        var shards = Split(tensors, maxShardBytes);
        if (shards.Count <= 1)
        {
            SafeTensors.Save(Path.Combine(dir, SingleFileName), tensors, metadata);
            RemoveStale(dir, keep: [SingleFileName]);
            return;
        }

        var names = new List<string>(shards.Count);
        var weightMap = new SortedDictionary<string, string>(Utf8Order.Instance);
        long totalSize = 0;
        for (int i = 0; i < shards.Count; i++)
        {
            string shardName = ShardFileName(i + 1, shards.Count);
            names.Add(shardName);
            var shard = shards[i].ToDictionary(name => name, name => tensors[name], StringComparer.Ordinal);
            SafeTensors.Save(Path.Combine(dir, shardName), shard, metadata);
            foreach (var (name, tensor) in shard)
            {
                weightMap[name] = shardName;
                totalSize += tensor.numel() * tensor.element_size();
            }
        }
        WriteIndex(Path.Combine(dir, IndexFileName), totalSize, weightMap);
        RemoveStale(dir, keep: [.. names, IndexFileName]);
    }

    internal static string ShardFileName(int number, int count) => $"model-{number:D5}-of-{count:D5}.safetensors";

    /// <summary>huggingface_hub's split_state_dict_into_shards: tensor names per shard, in dictionary order.</summary>
    internal static List<List<string>> Split(IReadOnlyDictionary<string, TorchSharp.torch.Tensor> tensors, long maxShardBytes)
    {
        var shards = new List<List<string>>();
        var current = new List<string>();
        long currentBytes = 0;
        foreach (var (name, tensor) in tensors)
        {
            long bytes = tensor.numel() * tensor.element_size();
            if (bytes > maxShardBytes)
            {
                shards.Add([name]);
                continue;
            }
            if (currentBytes + bytes > maxShardBytes)
            {
                shards.Add(current);
                current = [];
                currentBytes = 0;
            }
            current.Add(name);
            currentBytes += bytes;
        }
        if (current.Count > 0) shards.Add(current);
        return shards;
    }

    private static Dictionary<string, string> ReadWeightMap(string index)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(index));
        }
        catch (JsonException e)
        {
            throw new BadInputException($"{index}: not valid JSON: {e.Message}", e);
        }
        catch (IOException e)
        {
            throw new BadInputException($"{index}: cannot read: {e.Message}", e);
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("weight_map", out var map)
                || map.ValueKind != JsonValueKind.Object)
                throw new BadInputException($"{index}: expected a JSON object with a \"weight_map\" object");

            var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                    throw new BadInputException($"{index}: weight_map entry {ErrorText.Quote(entry.Name)} must name a shard file");
                string shard = entry.Value.GetString()!;
                // Shards sit next to the index; a path elsewhere is refused rather than followed.
                if (shard.Length == 0 || shard != Path.GetFileName(shard) || shard is "." or "..")
                    throw new BadInputException($"{index}: weight_map entry {ErrorText.Quote(entry.Name)} names {ErrorText.Quote(shard)}, " +
                                                "which is not a file name in the checkpoint folder");
                if (!weightMap.TryAdd(entry.Name, shard))
                    throw new BadInputException($"{index}: weight_map lists tensor {ErrorText.Quote(entry.Name)} twice");
            }
            return weightMap;
        }
    }

    /// <summary>The index as transformers writes it: json.dumps(index, indent=2, sort_keys=True) + "\n".</summary>
    private static void WriteIndex(string path, long totalSize, SortedDictionary<string, string> weightMap)
    {
        var options = new JsonWriterOptions { Indented = true, IndentSize = 2, NewLine = "\n", Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, options))
        {
            json.WriteStartObject();
            json.WriteStartObject("metadata");
            json.WriteNumber("total_size", totalSize);
            json.WriteEndObject();
            json.WriteStartObject("weight_map");
            foreach (var (name, shard) in weightMap) json.WriteString(name, shard);
            json.WriteEndObject();
            json.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');

        string temporary = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write))
            {
                buffer.Position = 0;
                buffer.CopyTo(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(temporary); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>Removes checkpoint files of an earlier save (single file, index, shards) that the new save did not write.</summary>
    private static void RemoveStale(string dir, IReadOnlyCollection<string> keep)
    {
        var candidates = Directory.EnumerateFiles(dir, "model-*-of-*.safetensors")
            .Select(Path.GetFileName)
            .Append(SingleFileName)
            .Append(IndexFileName);
        foreach (var name in candidates)
        {
            if (name is null || keep.Contains(name)) continue;
            string path = Path.Combine(dir, name);
            if (File.Exists(path)) File.Delete(path);
        }
    }
}
