using System.Text;
using NUnit.Framework;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Tests.Weights;

/// <summary>Every check of the reference reader, each failing with a one-line message that names the file and the tensor.</summary>
public class SafeTensorsRejectionTests
{
    private const string A = "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
    private const string B = "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]}";
    private const string Valid = "{" + A + "," + B + "}";

    private TempFolder _folder = null!;

    [SetUp] public void CreateFolder() => _folder = new TempFolder();
    [TearDown] public void RemoveFolder() => _folder.Dispose();

    private string WriteFile(byte[] bytes, string name = "broken.safetensors")
    {
        string path = _folder.File(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static BadInputException OpenFails(string path)
    {
        var error = Assert.Throws<BadInputException>(() => SafeTensorsFile.Open(path).Dispose())!;
        Assert.That(error.Message, Does.Contain(path), "the message names the file");
        Assert.That(error.Message, Does.Not.Contain('\n'), "the message is one line");
        return error;
    }

    [Test]
    public void A_hand_built_valid_file_opens_and_reads()
    {
        using var file = SafeTensorsFile.Open(WriteFile(RawSafeTensors.Build(Valid, 16), "valid.safetensors"));

        Assert.That(file.Entries.Keys, Is.EqualTo(new[] { "a", "b" }));
        var b = file.Entries["b"];
        Assert.That((b.DType, b.Shape, b.Begin, b.End), Is.EqualTo((SafeDType.I64, new long[] { 1 }, 8L, 16L)));
        using var read = file.Read("b");
        Assert.That(read.dtype, Is.EqualTo(ScalarType.Int64));
        Assert.That(RawSafeTensors.Bytes(read), Is.EqualTo(RawSafeTensors.Build(Valid, 16)[^8..]));
    }

    [Test]
    public void Truncated_file_is_rejected_naming_the_tensor_past_the_end()
    {
        var bytes = RawSafeTensors.Build(Valid, 16);

        var error = OpenFails(WriteFile(bytes[..^3]));

        Assert.That(error.Message, Does.Contain("'b'").And.Contain("truncated"));
    }

    [Test]
    public void File_shorter_than_the_length_prefix_is_rejected([Values(0, 1, 7)] int length)
    {
        var error = OpenFails(WriteFile(new byte[length]));

        Assert.That(error.Message, Does.Contain("shorter than the 8-byte header length"));
    }

    [Test]
    public void Oversized_header_length_is_rejected_before_allocating()
    {
        var error = OpenFails(WriteFile(RawSafeTensors.Build(Valid, 16, declaredHeaderLength: 100_000_001)));

        Assert.That(error.Message, Does.Contain("100000001").And.Contain("exceeds"));
    }

    [Test]
    public void Header_length_beyond_the_end_of_the_file_is_rejected()
    {
        var error = OpenFails(WriteFile(RawSafeTensors.Build(Valid, 16, declaredHeaderLength: 5000)));

        Assert.That(error.Message, Does.Contain("beyond the end"));
    }

    [Test]
    public void Huge_header_length_near_u64_max_is_rejected()
    {
        var error = OpenFails(WriteFile(RawSafeTensors.Build(Valid, 16, declaredHeaderLength: ulong.MaxValue)));

        Assert.That(error.Message, Does.Contain("exceeds"));
    }

    [TestCase("{" + A + ",\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[4,12]}}", 12, "'b'", "overlaps", TestName = "Overlapping_offsets_are_rejected")]
    [TestCase("{" + A + ",\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[12,20]}}", 20, "'b'", "hole of 4 bytes", TestName = "Hole_between_tensors_is_rejected")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "'a'", "hole", TestName = "Data_not_starting_at_offset_0_is_rejected")]
    [TestCase("{" + A + ",\"b\":{\"dtype\":\"I64\",\"shape\":[137438953472],\"data_offsets\":[8,1099511627784]}}", 16, "'b'", "reach beyond", TestName = "Out_of_bounds_offsets_are_rejected")]
    [TestCase(Valid, 20, "trailing", "16", TestName = "Trailing_bytes_after_the_last_tensor_are_rejected")]
    [TestCase("{" + A + "," + A + "}", 8, "'a'", "twice", TestName = "Duplicate_tensor_names_are_rejected")]
    [TestCase("{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "'a'", "unknown dtype 'F33'", TestName = "Unknown_dtype_is_rejected")]
    [TestCase("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[8],\"data_offsets\":[0,8]}}", 8, "'a'", "not supported", TestName = "Unsupported_dtype_is_rejected")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "'a'", "needs 12 bytes", TestName = "Shape_and_offsets_size_mismatch_is_rejected")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "'a'", "non-negative", TestName = "Negative_shape_is_rejected")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, "'a'", "non-negative integers", TestName = "Fractional_shape_is_rejected")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "'a'", "end before they begin", TestName = "Offsets_ending_before_they_begin_are_rejected")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8, "'a'", "two integers", TestName = "Three_offsets_are_rejected")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-1,7]}}", 8, "'a'", "non-negative", TestName = "Negative_offsets_are_rejected")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "'a'", "data_offsets", TestName = "Missing_offsets_are_rejected")]
    [TestCase("{\"a\":[1,2]}", 0, "'a'", "expected an object", TestName = "Tensor_info_that_is_not_an_object_is_rejected")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, "'a'", "overflows", TestName = "Shape_whose_size_overflows_is_rejected")]
    [TestCase("{\"__metadata__\":{\"format\":1}," + A + "}", 8, "__metadata__", "must be a string", TestName = "Metadata_value_that_is_not_a_string_is_rejected")]
    [TestCase("{\"__metadata__\":[]," + A + "}", 8, "__metadata__", "object of strings", TestName = "Metadata_that_is_not_an_object_is_rejected")]
    [TestCase(" " + Valid, 16, "start with '{'", "header", TestName = "Header_not_starting_with_a_brace_is_rejected")]
    [TestCase("[1,2]", 0, "start with '{'", "header", TestName = "Header_that_is_an_array_is_rejected")]
    [TestCase("{\"a\":", 0, "not valid JSON", "header", TestName = "Header_that_is_not_json_is_rejected")]
    [TestCase("", 0, "start with '{'", "header", TestName = "Empty_header_is_rejected")]
    public void Rejects(string header, long dataBytes, string expected, string alsoExpected)
    {
        var error = OpenFails(WriteFile(RawSafeTensors.Build(header, dataBytes)));

        Assert.That(error.Message, Does.Contain(expected).And.Contain(alsoExpected));
    }

    [Test]
    public void Header_that_is_not_utf8_is_rejected()
    {
        var header = Encoding.UTF8.GetBytes(Valid);
        header[3] = 0xFF;  // inside the name "a"

        var error = OpenFails(WriteFile(RawSafeTensors.Build(header, 16)));

        Assert.That(error.Message, Does.Contain("UTF-8"));
    }

    [Test]
    public void Control_characters_in_a_tensor_name_do_not_break_the_message_onto_two_lines()
    {
        var error = OpenFails(WriteFile(RawSafeTensors.Build("{\"x\\ny\":{\"dtype\":\"F33\",\"shape\":[],\"data_offsets\":[0,4]}}", 4)));

        Assert.That(error.Message, Does.Contain("'x\\u000ay'"));
    }

    [Test]
    public void Missing_file_is_bad_input_naming_the_path()
    {
        string path = _folder.File("nowhere.safetensors");

        var error = Assert.Throws<BadInputException>(() => SafeTensorsFile.Open(path));

        Assert.That(error!.Message, Does.Contain(path));
    }

    [Test]
    public void Empty_tensors_and_an_empty_header_are_accepted_like_the_reference()
    {
        using var empty = SafeTensorsFile.Open(WriteFile(RawSafeTensors.Build("{}", 0), "empty.safetensors"));
        using var zeroSized = SafeTensorsFile.Open(WriteFile(RawSafeTensors.Build(
            "{\"e\":{\"dtype\":\"F16\",\"shape\":[0,3],\"data_offsets\":[0,0]},\"s\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}   ", 1), "zero.safetensors"));

        Assert.That(empty.Entries, Is.Empty);
        Assert.That(zeroSized.Entries.Keys, Is.EqualTo(new[] { "e", "s" }));
        using var e = zeroSized.Read("e");
        Assert.That(e.shape, Is.EqualTo(new long[] { 0, 3 }));
    }
}
