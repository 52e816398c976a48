using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using NUnit.Framework;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Tests.Weights;

public class SafeTensorsRoundtripTests
{
    private static readonly long[][] Shapes = [[3, 5], [], [0, 4], [2, 1, 3]];

    private static Dictionary<string, Tensor> EveryDtypeAndShape()
    {
        var tensors = new Dictionary<string, Tensor>();
        int seed = 1;
        foreach (var dtype in Enum.GetValues<SafeDType>())
            foreach (var shape in Shapes)
                tensors[$"{dtype}.rank{shape.Length}.{string.Join("x", shape)}"] = RawSafeTensors.Noise(dtype, shape, seed++);
        return tensors;
    }

    private static void AssertSameTensors(IReadOnlyDictionary<string, Tensor> expected, IReadOnlyDictionary<string, Tensor> actual)
    {
        Assert.That(actual.Keys, Is.EquivalentTo(expected.Keys));
        foreach (var (name, tensor) in expected)
        {
            Assert.That(actual[name].dtype, Is.EqualTo(tensor.dtype), name);
            Assert.That(actual[name].shape, Is.EqualTo(tensor.shape), name);
            Assert.That(RawSafeTensors.Bytes(actual[name]), Is.EqualTo(RawSafeTensors.Bytes(tensor)), name);
        }
    }

    [Test]
    public void Roundtrip_is_byte_exact_for_every_dtype_including_scalars_and_empty_tensors()
    {
        using var folder = new TempFolder();
        var tensors = EveryDtypeAndShape();
        string path = folder.File("all.safetensors");

        SafeTensors.Save(path, tensors);
        var loaded = SafeTensors.Load(path);

        AssertSameTensors(tensors, loaded);
        Assert.That(loaded["F32.rank0."].shape, Is.Empty, "a 0-d scalar stays 0-d");
        Assert.That(loaded["BF16.rank2.0x4"].shape, Is.EqualTo(new long[] { 0, 4 }));
    }

    [Test]
    public void Roundtrip_is_byte_exact_when_reads_and_writes_go_in_small_chunks()
    {
        using var folder = new TempFolder();
        var tensors = EveryDtypeAndShape();
        string path = folder.File("chunked.safetensors");

        // 7-byte chunks: one element per chunk for 4- and 8-byte types, several for 1-byte types.
        SafeTensors.Save(path, tensors, metadata: null, chunkBytes: 7, beforeTensorWrite: null);
        using var file = SafeTensorsFile.Open(path);
        var loaded = file.Entries.Keys.ToDictionary(name => name, name => file.Read(name, chunkBytes: 7));

        AssertSameTensors(tensors, loaded);
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(WriteDefault(folder, tensors)), "chunk size does not change the file");
    }

    private static byte[] WriteDefault(TempFolder folder, Dictionary<string, Tensor> tensors)
    {
        string path = folder.File("default.safetensors");
        SafeTensors.Save(path, tensors);
        return File.ReadAllBytes(path);
    }

    [Test]
    public void Metadata_round_trips()
    {
        using var folder = new TempFolder();
        string path = folder.File("meta.safetensors");
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode \"quoted\" +<>&", ["empty"] = "" };

        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["w"] = ones(2) }, metadata);
        using var file = SafeTensorsFile.Open(path);

        Assert.That(file.Metadata, Is.EquivalentTo(metadata));
    }

    [Test]
    public void Written_header_puts_metadata_first_and_is_padded_with_spaces_to_a_multiple_of_8()
    {
        using var folder = new TempFolder();
        string path = folder.File("header.safetensors");
        for (int nameLength = 1; nameLength <= 8; nameLength++)
        {
            SafeTensors.Save(path, new Dictionary<string, Tensor> { [new string('x', nameLength)] = ones(1) },
                new Dictionary<string, string> { ["format"] = "pt" });
            string header = RawSafeTensors.HeaderText(path);

            Assert.That(Encoding.UTF8.GetByteCount(header) % 8, Is.Zero, $"name length {nameLength}");
            Assert.That(header, Does.StartWith("{\"__metadata__\":{\"format\":\"pt\"},"));
            Assert.That(header.TrimEnd(' '), Does.EndWith("}"));
            Assert.That(header.Length - header.TrimEnd(' ').Length, Is.LessThan(8));
        }
    }

    [Test]
    public void Writer_orders_tensors_like_the_reference_by_alignment_then_name()
    {
        using var folder = new TempFolder();
        string path = folder.File("order.safetensors");
        var tensors = new Dictionary<string, Tensor>
        {
            ["b"] = ones(2, dtype: ScalarType.Float16),
            ["a"] = ones(2, dtype: ScalarType.Float16),
            ["mask"] = ones(3, dtype: ScalarType.Bool),
            ["ids"] = ones(1, dtype: ScalarType.Int64),
            ["w"] = ones(1, dtype: ScalarType.Float32),
            ["h"] = ones(1, dtype: ScalarType.BFloat16),
        };

        SafeTensors.Save(path, tensors);

        // What huggingface/safetensors' serialize() writes for these tensors, byte for byte.
        const string expected =
            "{\"ids\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}," +
            "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}," +
            "\"h\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[12,14]}," +
            "\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[14,18]}," +
            "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[18,22]}," +
            "\"mask\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[22,25]}}";
        Assert.That(RawSafeTensors.HeaderText(path).TrimEnd(' '), Is.EqualTo(expected));
        using var file = SafeTensorsFile.Open(path);
        Assert.That(file.Entries.Keys, Is.EqualTo(new[] { "ids", "w", "h", "a", "b", "mask" }), "entries come in file order");
    }

    [Test]
    public void Noncontiguous_tensors_are_written_in_row_major_order()
    {
        using var folder = new TempFolder();
        string path = folder.File("t.safetensors");
        var matrix = arange(6, dtype: ScalarType.Float32).reshape(2, 3);

        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["t"] = matrix.t() });
        using var loaded = SafeTensors.Load(path)["t"];

        Assert.That(loaded.shape, Is.EqualTo(new long[] { 3, 2 }));
        Assert.That(loaded.data<float>().ToArray(), Is.EqualTo(new float[] { 0, 3, 1, 4, 2, 5 }));
    }

    [Test]
    public void ReadInto_fills_a_parameter_in_place_and_converts_dtype()
    {
        using var folder = new TempFolder();
        string path = folder.File("weights.safetensors");
        var weight = RawSafeTensors.Noise(SafeDType.F32, [4, 3], seed: 7);
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["w"] = weight, ["h"] = weight.to(ScalarType.BFloat16) });
        using var file = SafeTensorsFile.Open(path);

        var parameter = new TorchSharp.Modules.Parameter(zeros(4, 3));
        file.ReadInto("w", parameter);
        using var widened = zeros(4, 3, dtype: ScalarType.Float64);
        file.ReadInto("h", widened);

        Assert.That(RawSafeTensors.Bytes(parameter), Is.EqualTo(RawSafeTensors.Bytes(weight)));
        Assert.That(parameter.requires_grad, Is.True, "still a trainable parameter");
        Assert.That(widened.allclose(weight.to(ScalarType.BFloat16).to(ScalarType.Float64)), Is.True);
    }

    [Test]
    public void ReadInto_rejects_a_destination_of_another_shape_naming_file_and_tensor()
    {
        using var folder = new TempFolder();
        string path = folder.File("weights.safetensors");
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["layer.weight"] = ones(4, 3) });
        using var file = SafeTensorsFile.Open(path);

        var error = Assert.Throws<BadInputException>(() => file.ReadInto("layer.weight", zeros(3, 4)));

        Assert.That(error!.Message, Does.Contain("weights.safetensors").And.Contain("'layer.weight'").And.Contain("[4, 3]").And.Contain("[3, 4]"));
    }

    [Test]
    public void Reading_an_unknown_tensor_name_is_a_clear_error()
    {
        using var folder = new TempFolder();
        string path = folder.File("weights.safetensors");
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["a"] = ones(1) });
        using var file = SafeTensorsFile.Open(path);

        var error = Assert.Throws<BadInputException>(() => file.Read("b"));

        Assert.That(error!.Message, Does.Contain("weights.safetensors").And.Contain("'b'"));
    }

    [Test]
    public void Saving_over_an_existing_file_that_fails_midway_leaves_the_old_file_intact()
    {
        using var folder = new TempFolder();
        string path = folder.File("model.safetensors");
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["old"] = ones(8) });
        byte[] before = File.ReadAllBytes(path);
        var replacement = new Dictionary<string, Tensor> { ["a"] = zeros(1000), ["b"] = zeros(1000) };

        Assert.Throws<IOException>(() => SafeTensors.Save(path, replacement, metadata: null, chunkBytes: 64,
            beforeTensorWrite: name => { if (name == "b") throw new IOException("disk full (simulated)"); }));

        Assert.That(File.ReadAllBytes(path), Is.EqualTo(before));
        Assert.That(Directory.GetFiles(folder.Path), Is.EqualTo(new[] { path }), "no temporary file is left behind");
    }

    [Test]
    public void Saving_a_disposed_tensor_fails_and_leaves_the_old_file_intact()
    {
        using var folder = new TempFolder();
        string path = folder.File("model.safetensors");
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["old"] = ones(8) });
        byte[] before = File.ReadAllBytes(path);
        var disposed = ones(3);
        disposed.Dispose();

        Assert.That(() => SafeTensors.Save(path, new Dictionary<string, Tensor> { ["a"] = ones(2), ["z"] = disposed }), Throws.Exception);

        Assert.That(File.ReadAllBytes(path), Is.EqualTo(before));
        Assert.That(Directory.GetFiles(folder.Path), Is.EqualTo(new[] { path }));
    }

    [Test]
    public void Tensors_of_an_unsupported_dtype_are_refused_by_the_writer()
    {
        using var folder = new TempFolder();
        var complex = zeros(2, dtype: ScalarType.ComplexFloat32);

        var error = Assert.Throws<ArgumentException>(() => SafeTensors.Save(folder.File("c.safetensors"), new Dictionary<string, Tensor> { ["c"] = complex }));

        Assert.That(error!.Message, Does.Contain("'c'"));
    }

    [Test]
    public void A_written_file_parses_with_an_independent_minimal_reader()
    {
        using var folder = new TempFolder();
        string path = folder.File("plain.safetensors");
        var values = new float[] { 1.5f, -2f, 3.25f };
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["v"] = tensor(values) });

        // Decode the layout by hand, without the library's reader.
        var bytes = File.ReadAllBytes(path);
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        using var header = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, (int)n));
        var offsets = header.RootElement.GetProperty("v").GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        var decoded = Enumerable.Range(0, 3)
            .Select(i => BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan((int)(8 + n + offsets[0] + 4 * i))))
            .ToArray();

        Assert.That(decoded, Is.EqualTo(values));
        Assert.That(bytes.Length, Is.EqualTo(8 + n + offsets[1]));
    }
}
