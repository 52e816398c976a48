// Whole-file safetensors loading and saving. In: a path and a name -> tensor dictionary. Out: the same.
//
// The writer produces what the reference writer (huggingface/safetensors) produces: "__metadata__" first, tensors
// ordered by dtype alignment descending then name, offsets contiguous from 0, header padded with spaces to a multiple
// of 8. It writes a temporary file next to the destination and renames it over the destination, so an existing file
// is either left as it was or replaced whole, never half-written.
using System.Buffers;
using System.Buffers.Binary;
using System.Text.Encodings.Web;
using System.Text.Json;
using TorchSharp;

namespace VlaBias.Weights;

public static class SafeTensors
{
    private const string MetadataKey = "__metadata__";

    /// <summary>Reads every tensor of a file into new CPU tensors, in file order.</summary>
    public static Dictionary<string, torch.Tensor> Load(string path)
    {
        using var file = SafeTensorsFile.Open(path);
        var tensors = new Dictionary<string, torch.Tensor>(file.Entries.Count, StringComparer.Ordinal);
        try
        {
            foreach (var name in file.Entries.Keys) tensors.Add(name, file.Read(name));
            return tensors;
        }
        catch
        {
            foreach (var tensor in tensors.Values) tensor.Dispose();
            throw;
        }
    }

    /// <summary>Writes the tensors (any device, any layout; copied to contiguous CPU memory one at a time) to a file.</summary>
    public static void Save(string path, IReadOnlyDictionary<string, torch.Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
        => Save(path, tensors, metadata, TensorMemory.DefaultChunkBytes, beforeTensorWrite: null);

    /// <param name="beforeTensorWrite">Test hook, called with each tensor's name just before its bytes are written.</param>
    internal static void Save(string path, IReadOnlyDictionary<string, torch.Tensor> tensors, IReadOnlyDictionary<string, string>? metadata,
        int chunkBytes, Action<string>? beforeTensorWrite)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var layout = Layout(tensors);
        byte[] header = Header(layout, metadata);

        string fullPath = Path.GetFullPath(path);
        string folder = Path.GetDirectoryName(fullPath)!;
        Directory.CreateDirectory(folder);
        string temporary = Path.Combine(folder, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 20))
            {
                Span<byte> length = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
                stream.Write(length);
                stream.Write(header);
                foreach (var entry in layout)
                {
                    beforeTensorWrite?.Invoke(entry.Name);
                    using var detached = tensors[entry.Name].detach();
                    using var onCpu = detached.cpu();
                    using var contiguous = onCpu.contiguous();
                    if (contiguous.numel() * contiguous.element_size() != entry.ByteLength)
                        throw new InvalidOperationException($"tensor '{entry.Name}' changed size while it was being saved");
                    TensorMemory.ForEachChunk(contiguous, chunkBytes, (chunk, _) => stream.Write(chunk));
                }
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, fullPath, overwrite: true);
        }
        catch
        {
            try { File.Delete(temporary); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>The reference writer's layout: dtype alignment descending, then name (ordinal), offsets from 0.</summary>
    internal static List<SafeTensorEntry> Layout(IReadOnlyDictionary<string, torch.Tensor> tensors)
    {
        var described = new List<(string Name, SafeDType DType, long[] Shape, long Bytes)>(tensors.Count);
        foreach (var (name, tensor) in tensors)
        {
            if (name is null || name == MetadataKey)
                throw new ArgumentException($"'{name}' cannot be a tensor name in a safetensors file", nameof(tensors));
            if (tensor is null)
                throw new ArgumentException($"tensor '{name}' is null", nameof(tensors));
            var dtype = SafeDTypes.FromScalarType(tensor.dtype)
                        ?? throw new ArgumentException($"tensor '{name}' has dtype {tensor.dtype}, which safetensors files here cannot hold", nameof(tensors));
            described.Add((name, dtype, tensor.shape, checked(tensor.numel() * dtype.ElementSize())));
        }

        var layout = new List<SafeTensorEntry>(described.Count);
        long offset = 0;
        foreach (var t in described.OrderByDescending(t => t.DType.AlignmentRank()).ThenBy(t => t.Name, Utf8Order.Instance))
        {
            layout.Add(new SafeTensorEntry(t.Name, t.DType, t.Shape, offset, offset + t.Bytes));
            offset += t.Bytes;
        }
        return layout;
    }

    /// <summary>The JSON header, serialized compactly like serde_json and padded with spaces to a multiple of 8 bytes.</summary>
    internal static byte[] Header(IReadOnlyList<SafeTensorEntry> layout, IReadOnlyDictionary<string, string>? metadata)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            if (metadata is not null)
            {
                json.WriteStartObject(MetadataKey);
                foreach (var (key, value) in metadata) json.WriteString(key, value);
                json.WriteEndObject();
            }
            foreach (var entry in layout)
            {
                json.WriteStartObject(entry.Name);
                json.WriteString("dtype", entry.DType.ToString());
                json.WriteStartArray("shape");
                foreach (long dim in entry.Shape) json.WriteNumberValue(dim);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(entry.Begin);
                json.WriteNumberValue(entry.End);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }

        int padded = (buffer.WrittenCount + 7) / 8 * 8;
        if (padded > SafeTensorsFile.MaxHeaderBytes)
            throw new InvalidOperationException($"the safetensors header would be {padded} bytes, above the format's limit of {SafeTensorsFile.MaxHeaderBytes}");
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(buffer.WrittenCount).Fill((byte)' ');
        return header;
    }
}

/// <summary>Orders strings by Unicode code point, which is the byte order of their UTF-8 (Rust's String order).</summary>
internal sealed class Utf8Order : IComparer<string>
{
    public static readonly Utf8Order Instance = new();

    public int Compare(string? x, string? y)
    {
        if (x is null || y is null) return x is null ? (y is null ? 0 : -1) : 1;
        var left = x.EnumerateRunes();
        var right = y.EnumerateRunes();
        while (true)
        {
            bool hasLeft = left.MoveNext(), hasRight = right.MoveNext();
            if (!hasLeft || !hasRight) return hasLeft.CompareTo(hasRight);
            int order = left.Current.Value.CompareTo(right.Current.Value);
            if (order != 0) return order;
        }
    }
}
