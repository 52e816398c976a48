// A PyTorch checkpoint written by torch.save (pytorch_model.bin, its shards, adapter_model.bin): a zip archive with
// <name>/data.pkl (the pickled state dict) and <name>/data/<key> (raw little-endian storage bytes). In: a path.
// Out: tensor names and shapes at once (from PickleScanner, nothing run), tensors read through TorchSharp.PyBridge on
// first use and released as they are copied into parameters.
//
// Refused with a one-line BadInputException naming the file: anything PickleScanner refuses (a class or call outside
// a plain state dict of tensors), the pre-1.6 non-zip format, views PyBridge would read wrongly (storage offset or
// non-contiguous strides), and tensors larger than their storage entry.
using System.Collections;
using System.IO.Compression;
using TorchSharp;
using TorchSharp.PyBridge;

namespace VlaBias.Weights;

public sealed class PyTorchBinFile : ITensorFile
{
    /// <summary>A state dict's pickle is about 100 bytes per tensor; anything far larger is not one.</summary>
    public const long MaxPickleBytes = 256L << 20;

    private readonly Dictionary<string, PickledTensor> tensors;
    private Dictionary<string, torch.Tensor>? loaded;
    private bool disposed;

    public string Path { get; }
    public IReadOnlyDictionary<string, long[]> Shapes { get; }

    private PyTorchBinFile(string path, Dictionary<string, PickledTensor> tensors)
    {
        Path = path;
        this.tensors = tensors;
        Shapes = tensors.ToDictionary(t => t.Key, t => t.Value.Shape, StringComparer.Ordinal);
    }

    private static BadInputException Bad(string path, string message) => new($"{path}: {message}");

    /// <summary>Opens the archive, scans its pickle and checks every tensor against its storage; reads no tensor data.</summary>
    public static PyTorchBinFile Open(string path)
    {
        FileStream stream;
        try { stream = File.OpenRead(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        { throw Bad(path, $"cannot open PyTorch checkpoint: {e.Message}"); }
        using (stream)
        {
            Span<byte> magic = stackalloc byte[4];
            int got = stream.ReadAtLeast(magic, 4, throwOnEndOfStream: false);
            if (got < 4 || magic[0] != 'P' || magic[1] != 'K' || magic[2] != 3 || magic[3] != 4)
                throw Bad(path, got >= 2 && magic[0] == 0x80 && magic[1] <= 5
                    ? "PyTorch's legacy (pre-1.6, non-zip) torch.save format is not read; re-save it with a current torch.save or convert it to safetensors"
                    : "not a PyTorch checkpoint (torch.save writes a zip archive)");
            stream.Position = 0;
            try { return Open(path, stream); }
            catch (InvalidDataException e) { throw Bad(path, $"not a readable zip archive (truncated?): {e.Message}"); }
        }
    }

    private static PyTorchBinFile Open(string path, FileStream stream)
    {
        using (var zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true))
        {
            // PyBridge reads the first entry whose name ends in data.pkl: with exactly one, it reads the one scanned here.
            var pickles = zip.Entries.Where(e => e.Name.EndsWith("data.pkl", StringComparison.Ordinal)).ToList();
            if (pickles.Count != 1)
                throw Bad(path, pickles.Count == 0 ? "the archive has no data.pkl (not written by torch.save)" : "the archive has more than one data.pkl");
            if (pickles[0].Length > MaxPickleBytes)
                throw Bad(path, $"data.pkl is {pickles[0].Length} bytes, more than a state dict's pickle ({MaxPickleBytes})");
            var pickle = new byte[pickles[0].Length];
            try
            {
                using var s = pickles[0].Open();
                s.ReadExactly(pickle);
            }
            catch (Exception e) when (e is InvalidDataException or EndOfStreamException or IOException)
            { throw Bad(path, $"data.pkl cannot be read (truncated archive?): {e.Message}"); }

            var byName = new Dictionary<string, PickledTensor>(StringComparer.Ordinal);
            foreach (var t in PickleScanner.Scan(path, pickle))
            {
                Check(path, zip, t);
                byName.Add(t.Name, t);
            }
            return new PyTorchBinFile(path, byName);
        }
    }

    private static void Check(string path, ZipArchive zip, PickledTensor t)
    {
        string where = $"tensor {ErrorText.Quote(t.Name)}";
        if (t.Shape.Any(d => d < 0 || d > int.MaxValue) || t.Stride.Any(s => s < 0 || s > int.MaxValue) || t.Stride.Length != t.Shape.Length)
            throw Bad(path, $"{where}: shape {ErrorText.Shape(t.Shape)} / stride {ErrorText.Shape(t.Stride)} are not a tensor's");
        long numel;
        try { numel = checked(t.Shape.Aggregate(1L, (n, d) => n * d)); }
        catch (OverflowException) { throw Bad(path, $"{where}: shape {ErrorText.Shape(t.Shape)} is too large"); }
        long expected = 1;
        for (int i = t.Shape.Length - 1; i >= 0; i--)
        {
            if (t.Shape[i] != 1 && numel != 0 && t.Stride[i] != expected)
                throw Bad(path, $"{where} is a non-contiguous view (stride {ErrorText.Shape(t.Stride)}), which TorchSharp.PyBridge reads wrongly; " +
                                "re-save with {k: v.contiguous() for k, v in state_dict.items()} or as safetensors");
            expected *= t.Shape[i];
        }
        if (t.Offset != 0)
            throw Bad(path, $"{where} is a view at offset {t.Offset} into a larger storage, which TorchSharp.PyBridge reads wrongly; " +
                            "re-save with {k: v.clone() for k, v in state_dict.items()} or as safetensors");
        // The entry PyBridge's persistent_load picks: the first whose full name ends in data/<key>.
        var entry = zip.Entries.FirstOrDefault(e => e.FullName.EndsWith($"data/{t.StorageKey}", StringComparison.Ordinal))
            ?? throw Bad(path, $"{where}: its storage {ErrorText.Quote(t.StorageKey)} is missing from the archive");
        long bytes = numel * t.DType.ElementSize();
        if (t.StorageNumel * t.DType.ElementSize() < bytes || entry.Length < bytes)
            throw Bad(path, $"{where}: shape {ErrorText.Shape(t.Shape)} needs {bytes} bytes but its storage holds {Math.Min(entry.Length, t.StorageNumel * t.DType.ElementSize())} (truncated or inconsistent file)");
    }

    public void ReadInto(string name, torch.Tensor destination)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (!tensors.TryGetValue(name, out var info)) throw Bad(Path, $"no tensor named {ErrorText.Quote(name)}");
        if (!destination.shape.SequenceEqual(info.Shape))
            throw Bad(Path, $"tensor {ErrorText.Quote(name)} has shape {ErrorText.Shape(info.Shape)} in the file but {ErrorText.Shape(destination.shape)} is expected");
        if (loaded is null || !loaded.ContainsKey(name)) Load();
        var source = loaded![name];
        using (torch.no_grad()) destination.copy_(source);
        // Released once copied, so loading a model holds at most one file's tensors beside the model.
        source.Dispose();
        loaded.Remove(name);
        if (loaded.Count == 0) loaded = null;
    }

    private void Load()
    {
        Release();
        Hashtable table;
        using (var scope = torch.NewDisposeScope())
        {
            try
            {
                using var stream = File.OpenRead(Path);
                table = PyTorchUnpickler.UnpickleStateDict(stream);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                throw Bad(Path, $"TorchSharp.PyBridge cannot read it: {e.Message}");
            }
            var result = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
            foreach (DictionaryEntry kv in table)
                if (kv.Key is string key && kv.Value is torch.Tensor t && tensors.TryGetValue(key, out var info)
                    && t.shape.SequenceEqual(info.Shape) && t.dtype == info.DType.ToScalarType())
                    result[key] = t.DetachFromDisposeScope();
            var missing = tensors.Keys.FirstOrDefault(k => !result.ContainsKey(k));
            if (missing is not null)
            {
                foreach (var t in result.Values) t.Dispose();
                throw Bad(Path, $"TorchSharp.PyBridge's reading of tensor {ErrorText.Quote(missing)} disagrees with the pickle");
            }
            loaded = result;
        }
    }

    private void Release()
    {
        if (loaded is null) return;
        foreach (var t in loaded.Values) t.Dispose();
        loaded = null;
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        Release();
    }
}
