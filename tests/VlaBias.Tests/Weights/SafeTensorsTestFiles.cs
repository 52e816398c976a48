using System.Buffers.Binary;
using System.Text;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Tests.Weights;

/// <summary>A scratch folder for one test, removed afterwards.</summary>
internal sealed class TempFolder : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("vlabias-weights-").FullName;

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

/// <summary>Builds safetensors files byte by byte, to hand the reader exactly the damage a test wants.</summary>
internal static class RawSafeTensors
{
    /// <param name="header">The JSON header, written as is (no padding).</param>
    /// <param name="dataBytes">How many data bytes follow the header (filled with a pattern).</param>
    /// <param name="declaredHeaderLength">The u64 written in front, if not the header's real length.</param>
    public static byte[] Build(string header, long dataBytes, ulong? declaredHeaderLength = null)
        => Build(Encoding.UTF8.GetBytes(header), dataBytes, declaredHeaderLength);

    public static byte[] Build(byte[] header, long dataBytes, ulong? declaredHeaderLength = null)
    {
        var file = new byte[8 + header.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(file, declaredHeaderLength ?? (ulong)header.Length);
        header.CopyTo(file, 8);
        for (long i = 0; i < dataBytes; i++) file[8 + header.Length + i] = (byte)(i * 37 + 11);
        return file;
    }

    /// <summary>The header text of a file, as written (padding included).</summary>
    public static string HeaderText(string path)
    {
        var bytes = System.IO.File.ReadAllBytes(path);
        long length = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        return Encoding.UTF8.GetString(bytes, 8, (int)length);
    }

    /// <summary>A tensor of the dtype and shape whose bytes are seeded noise (0/1 for BOOL, where other bytes are not valid).</summary>
    public static Tensor Noise(SafeDType dtype, long[] shape, int seed)
    {
        var tensor = empty(shape, dtype: dtype.ToScalarType());
        var bytes = new byte[tensor.numel() * tensor.element_size()];
        new Random(seed).NextBytes(bytes);
        if (dtype == SafeDType.BOOL)
            for (int i = 0; i < bytes.Length; i++) bytes[i] &= 1;
        if (bytes.Length > 0) tensor.bytes = bytes;
        return tensor;
    }

    public static byte[] Bytes(Tensor tensor) => tensor.numel() == 0 ? [] : tensor.contiguous().bytes.ToArray();
}
