// One safetensors file, opened for reading. In: a path. Out: the validated header (tensor entries, metadata)
// and, on request, single tensors read straight from the file into tensor memory.
//
// Layout: u64 little-endian header length N | N bytes of UTF-8 JSON
//   {"__metadata__": {str: str}, name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
// | the data buffer; offsets are relative to it, end exclusive, row-major little-endian.
//
// Open checks what the reference reader (huggingface/safetensors, safetensors/src/tensor.rs) checks, so a file this
// class accepts is one the reference accepts, and every rejection is a BadInputException naming the file and tensor.
using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using TorchSharp;

namespace VlaBias.Weights;

public sealed record SafeTensorEntry(string Name, SafeDType DType, long[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;
}

public sealed class SafeTensorsFile : ITensorFile
{
    /// <summary>The reference reader's MAX_HEADER_SIZE: larger headers are refused before anything is allocated.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private const string MetadataKey = "__metadata__";
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly SafeFileHandle _handle;
    private readonly long _dataStart;
    private bool _disposed;

    public string Path { get; }

    /// <summary>The tensors, in the order of their data in the file.</summary>
    public IReadOnlyDictionary<string, SafeTensorEntry> Entries { get; }

    public IReadOnlyDictionary<string, string> Metadata { get; }

    private IReadOnlyDictionary<string, long[]>? shapes;

    public IReadOnlyDictionary<string, long[]> Shapes => shapes ??= Entries.ToDictionary(e => e.Key, e => e.Value.Shape, StringComparer.Ordinal);

    private SafeTensorsFile(string path, SafeFileHandle handle, long dataStart,
        IReadOnlyDictionary<string, SafeTensorEntry> entries, IReadOnlyDictionary<string, string> metadata)
    {
        Path = path;
        _handle = handle;
        _dataStart = dataStart;
        Entries = entries;
        Metadata = metadata;
    }

    /// <summary>Opens the file and reads and validates its header; no tensor data is read.</summary>
    public static SafeTensorsFile Open(string path)
    {
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new BadInputException($"{path}: cannot open safetensors file: {e.Message}", e);
        }

        try
        {
            long fileLength = RandomAccess.GetLength(handle);
            if (fileLength < 8)
                throw Bad(path, $"file is {fileLength} bytes, shorter than the 8-byte header length");

            Span<byte> lengthBytes = stackalloc byte[8];
            ReadExactly(handle, lengthBytes, 0, path, null);
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
            if (headerLength > MaxHeaderBytes)
                throw Bad(path, $"header length {headerLength} exceeds the limit of {MaxHeaderBytes} bytes");
            if (8 + (long)headerLength > fileLength)
                throw Bad(path, $"header length {headerLength} reaches beyond the end of the {fileLength}-byte file");

            var header = new byte[headerLength];
            ReadExactly(handle, header, 8, path, null);
            long dataStart = 8 + (long)headerLength;
            var (entries, metadata) = ParseHeader(path, header, fileLength - dataStart);
            return new SafeTensorsFile(path, handle, dataStart, entries, metadata);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>A new CPU tensor with the on-disk dtype and shape, filled straight from the file.</summary>
    public torch.Tensor Read(string name) => Read(name, TensorMemory.DefaultChunkBytes);

    internal torch.Tensor Read(string name, int chunkBytes)
    {
        var entry = Entry(name);
        var tensor = torch.empty(entry.Shape, dtype: entry.DType.ToScalarType());
        try
        {
            ReadData(entry, tensor, chunkBytes);
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Copies a tensor into an existing one of the same shape (converting dtype if they differ), e.g. a model's
    /// parameter, so a model loads without a second copy of its weights. A contiguous CPU destination of the
    /// on-disk dtype is filled straight from the file; any other needs one temporary copy of this tensor.
    /// </summary>
    public void ReadInto(string name, torch.Tensor destination) => ReadInto(name, destination, TensorMemory.DefaultChunkBytes);

    internal void ReadInto(string name, torch.Tensor destination, int chunkBytes)
    {
        var entry = Entry(name);
        if (!destination.shape.SequenceEqual(entry.Shape))
            throw Bad(Path, $"tensor {ErrorText.Quote(name)} has shape {ErrorText.Shape(entry.Shape)} in the file " +
                            $"but {ErrorText.Shape(destination.shape)} is expected");

        using var noGrad = torch.no_grad();
        if (destination.dtype == entry.DType.ToScalarType() && destination.device_type == DeviceType.CPU && destination.is_contiguous())
        {
            ReadData(entry, destination, chunkBytes);
            return;
        }
        using var staged = Read(name, chunkBytes);
        destination.copy_(staged);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _handle.Dispose();
    }

    private SafeTensorEntry Entry(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return Entries.TryGetValue(name, out var entry)
            ? entry
            : throw Bad(Path, $"no tensor named {ErrorText.Quote(name)}");
    }

    private void ReadData(SafeTensorEntry entry, torch.Tensor destination, int chunkBytes)
    {
        long start = _dataStart + entry.Begin;
        TensorMemory.ForEachChunk(destination, chunkBytes,
            (chunk, offset) => ReadExactly(_handle, chunk, start + offset, Path, entry.Name));
    }

    private static void ReadExactly(SafeFileHandle handle, Span<byte> buffer, long fileOffset, string path, string? tensor)
    {
        while (buffer.Length > 0)
        {
            int read = RandomAccess.Read(handle, buffer, fileOffset);
            if (read == 0)
                throw Bad(path, (tensor is null ? "" : $"tensor {ErrorText.Quote(tensor)}: ") +
                                $"the file ends at byte {fileOffset} (was it truncated after it was opened?)");
            buffer = buffer[read..];
            fileOffset += read;
        }
    }

    private static BadInputException Bad(string path, string message) => new($"{path}: {message}");

    /// <summary>Parses and validates the JSON header against a data buffer of <paramref name="dataLength"/> bytes.</summary>
    internal static (IReadOnlyDictionary<string, SafeTensorEntry> Entries, IReadOnlyDictionary<string, string> Metadata)
        ParseHeader(string path, byte[] header, long dataLength)
    {
        string text;
        try
        {
            text = StrictUtf8.GetString(header);
        }
        catch (DecoderFallbackException)
        {
            throw Bad(path, "header is not valid UTF-8");
        }
        if (text.Length == 0 || text[0] != '{')
            throw Bad(path, "header does not start with '{'");

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(text);
        }
        catch (JsonException e)
        {
            throw Bad(path, $"header is not valid JSON: {e.Message}");
        }

        var entries = new List<SafeTensorEntry>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw Bad(path, "header is not a JSON object");

            // JsonDocument keeps duplicate keys; the reference rejects them, so they are caught here.
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (!seen.Add(property.Name))
                    throw Bad(path, $"header has the key {ErrorText.Quote(property.Name)} twice");
                if (property.Name == MetadataKey)
                    ParseMetadata(path, property.Value, metadata);
                else
                    entries.Add(ParseEntry(path, property.Name, property.Value));
            }
        }

        // Like the reference: order by offsets, then the buffer must be covered exactly, from 0, without holes or overlaps.
        var ordered = entries.OrderBy(e => e.Begin).ThenBy(e => e.End).ToList();
        long expected = 0;
        SafeTensorEntry? previous = null;
        foreach (var entry in ordered)
        {
            if (entry.Begin != expected)
            {
                string where = previous is null ? "the start of the data buffer (0)" : $"the end of tensor {ErrorText.Quote(previous.Name)} ({expected})";
                string problem = entry.Begin < expected ? "overlaps" : $"leaves a hole of {entry.Begin - expected} bytes after";
                throw Bad(path, $"tensor {ErrorText.Quote(entry.Name)}: data_offsets [{entry.Begin}, {entry.End}] {problem} {where}");
            }
            if (entry.End > dataLength)
                throw Bad(path, $"tensor {ErrorText.Quote(entry.Name)}: data_offsets [{entry.Begin}, {entry.End}] reach beyond " +
                                $"the {dataLength}-byte data buffer (the file is truncated or the offsets are wrong)");
            expected = entry.End;
            previous = entry;
        }
        if (expected != dataLength)
            throw Bad(path, $"the header accounts for {expected} bytes of tensor data but the file has {dataLength} " +
                            "(trailing bytes after the last tensor)");

        var byName = new Dictionary<string, SafeTensorEntry>(ordered.Count, StringComparer.Ordinal);
        foreach (var entry in ordered) byName.Add(entry.Name, entry);
        return (byName, metadata);
    }

    private static void ParseMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind == JsonValueKind.Null) return;  // serde reads a null __metadata__ as absent
        if (value.ValueKind != JsonValueKind.Object)
            throw Bad(path, $"{MetadataKey} must be an object of strings, found {value.ValueKind}");
        foreach (var item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
                throw Bad(path, $"{MetadataKey} value of {ErrorText.Quote(item.Name)} must be a string, found {item.Value.ValueKind}");
            if (!metadata.TryAdd(item.Name, item.Value.GetString()!))
                throw Bad(path, $"{MetadataKey} has the key {ErrorText.Quote(item.Name)} twice");
        }
    }

    private static SafeTensorEntry ParseEntry(string path, string name, JsonElement value)
    {
        string Where() => $"tensor {ErrorText.Quote(name)}";
        if (value.ValueKind != JsonValueKind.Object)
            throw Bad(path, $"{Where()}: expected an object with dtype, shape and data_offsets, found {value.ValueKind}");

        JsonElement? dtypeJson = null, shapeJson = null, offsetsJson = null;
        foreach (var field in value.EnumerateObject())
        {
            ref JsonElement? slot = ref dtypeJson;
            switch (field.Name)
            {
                case "dtype": slot = ref dtypeJson; break;
                case "shape": slot = ref shapeJson; break;
                case "data_offsets": slot = ref offsetsJson; break;
                default: continue;  // the reference ignores unknown fields
            }
            if (slot is not null) throw Bad(path, $"{Where()}: field {field.Name} appears twice");
            slot = field.Value;
        }

        if (dtypeJson is not { ValueKind: JsonValueKind.String } dtypeElement)
            throw Bad(path, $"{Where()}: dtype is missing or not a string");
        if (!SafeDTypes.TryParse(dtypeElement.GetString()!, out var dtype, out var dtypeError))
            throw Bad(path, $"{Where()}: {dtypeError}");

        if (shapeJson is not { ValueKind: JsonValueKind.Array } shapeElement)
            throw Bad(path, $"{Where()}: shape is missing or not a list");
        var shape = new long[shapeElement.GetArrayLength()];
        int i = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long size) || size < 0)
                throw Bad(path, $"{Where()}: shape must be a list of non-negative integers, found {dim.GetRawText()}");
            shape[i++] = size;
        }

        if (offsetsJson is not { ValueKind: JsonValueKind.Array } offsetsElement || offsetsElement.GetArrayLength() != 2)
            throw Bad(path, $"{Where()}: data_offsets must be a list of two integers [begin, end]");
        var offsets = new long[2];
        i = 0;
        foreach (var offset in offsetsElement.EnumerateArray())
        {
            if (offset.ValueKind != JsonValueKind.Number || !offset.TryGetInt64(out long at) || at < 0)
                throw Bad(path, $"{Where()}: data_offsets must be non-negative integers, found {offset.GetRawText()}");
            offsets[i++] = at;
        }
        long begin = offsets[0], end = offsets[1];
        if (begin > end)
            throw Bad(path, $"{Where()}: data_offsets [{begin}, {end}] end before they begin");

        long expectedBytes;
        try
        {
            expectedBytes = checked(shape.Aggregate(1L, (n, d) => n * d) * dtype.ElementSize());
        }
        catch (OverflowException)
        {
            throw Bad(path, $"{Where()}: shape {ErrorText.Shape(shape)} is too large (its byte size overflows)");
        }
        if (end - begin != expectedBytes)
            throw Bad(path, $"{Where()}: dtype {dtype} with shape {ErrorText.Shape(shape)} needs {expectedBytes} bytes " +
                            $"but data_offsets [{begin}, {end}] hold {end - begin}");

        return new SafeTensorEntry(name, dtype, shape, begin, end);
    }
}
