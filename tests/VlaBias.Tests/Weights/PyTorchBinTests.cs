using System.IO.Compression;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.PyBridge;
using VlaBias.Adapters;
using VlaBias.Model;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Tests.Weights;

/// <summary>
/// PyTorch .bin checkpoints written by torch.save (tools/reference/pytorch_bin_reference.py, Debian's python3-torch):
/// twins of the golden safetensors checkpoints load to the same weights and logits; pickles that are not plain state
/// dicts of tensors are refused before anything in them runs.
/// </summary>
public class PyTorchBinTests
{
    private static readonly string Fixtures = Path.Combine(AppContext.BaseDirectory, "Fixtures");
    private static string Bin(params string[] parts) => Path.Combine([Fixtures, "pytorch_bin", .. parts]);
    private static string Golden(string name) => Path.Combine(Fixtures, "golden", name);
    private const string Marker = "/tmp/vlatune-hostile-pickle-ran";

    private static Tensor Logits(LlavaModel model, string golden)
    {
        var inputs = SafeTensors.Load(Path.Combine(golden, "inputs.safetensors"));
        using var _ = no_grad();
        return model.call(new ModelInput { InputIds = inputs["input_ids"], Pixels = inputs["pixel_values"], Mask = inputs["attention_mask"], Positions = inputs["position_ids"] }).Logits!;
    }

    [TestCase("clip-llama-gqa", "clip-llama-gqa")]
    [TestCase("siglip-qwen2-sharded", "siglip-qwen2")]
    public void Bin_twin_gives_the_same_weights_and_logits_as_the_safetensors_original(string bin, string golden)
    {
        using var scope = NewDisposeScope();
        var fromBin = LlavaModel.FromPretrained(Bin(bin));
        var fromSafetensors = LlavaModel.FromPretrained(Golden(golden));
        var a = fromBin.state_dict();
        foreach (var (name, t) in fromSafetensors.state_dict())
            Assert.That(a[name].eq(t).all().ToBoolean(), Is.True, $"{name} differs");
        var la = Logits(fromBin, Golden(golden));
        var lb = Logits(fromSafetensors, Golden(golden));
        Assert.That((la - lb).abs().max().ToSingle(), Is.EqualTo(0f), "identical weights give identical logits");
        // and both match the independent PyTorch reference's logits
        var expected = SafeTensors.Load(Path.Combine(Golden(golden), "expected.safetensors"))["logits"];
        var mask = SafeTensors.Load(Path.Combine(Golden(golden), "inputs.safetensors"))["attention_mask"].to_type(ScalarType.Bool).unsqueeze(-1);
        Assert.That((la - expected).abs().masked_fill(mask.logical_not(), 0).max().ToSingle(), Is.LessThanOrEqualTo(1e-4f));
    }

    [Test]
    public void Safetensors_wins_when_both_are_in_the_folder()
    {
        var dir = TestPaths.NewTempDir("bin-both");
        try
        {
            foreach (var f in Directory.GetFiles(Golden("clip-llama-gqa"))) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
            File.WriteAllBytes(Path.Combine(dir, ShardedCheckpoint.BinFileName), File.ReadAllBytes(Bin("hostile", "os_system.bin")));
            var files = ShardedCheckpoint.OpenFolder(dir);
            Assert.That(files.Values.Distinct().Single(), Is.InstanceOf<SafeTensorsFile>());
            foreach (var f in files.Values.Distinct()) f.Dispose();
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void Every_storage_dtype_reads_with_its_values()
    {
        using var file = PyTorchBinFile.Open(Bin("dtypes.bin"));
        Assert.That(file.Shapes.Keys, Is.EquivalentTo(new[] { "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL" }));
        foreach (var name in file.Shapes.Keys)
        {
            var type = Enum.Parse<SafeDType>(name).ToScalarType();
            using var into = zeros([2, 3], type);
            file.ReadInto(name, into);
            using var values = arange(6).reshape(2, 3);
            using var expected = name == "BOOL" ? (values % 2).to_type(type) : (values - 2).to_type(type);
            Assert.That(into.eq(expected).all().ToBoolean(), Is.True, name);
        }
    }

    [Test]
    public void Bin_adapter_applies_like_its_safetensors_twin()
    {
        var dir = TestPaths.NewTempDir("bin-adapter");
        try
        {
            string st = Path.Combine(dir, "st"), bin = Path.Combine(dir, "bin");
            Directory.CreateDirectory(st); Directory.CreateDirectory(bin);
            File.Copy(Bin("adapter", "adapter_config.json"), Path.Combine(st, "adapter_config.json"));
            File.Copy(Bin("adapter", "adapter_model.safetensors"), Path.Combine(st, "adapter_model.safetensors"));
            File.Copy(Bin("adapter", "adapter_config.json"), Path.Combine(bin, "adapter_config.json"));
            File.Copy(Bin("adapter", "adapter_model.bin"), Path.Combine(bin, "adapter_model.bin"));
            using var scope = NewDisposeScope();
            var baseModel = LlavaModel.FromPretrained(Golden("clip-llama-gqa"));
            var plain = Logits(baseModel, Golden("clip-llama-gqa"));
            var m1 = LlavaModel.FromPretrained(Golden("clip-llama-gqa"));
            LoraAdapter.Load(m1, st);
            var m2 = LlavaModel.FromPretrained(Golden("clip-llama-gqa"));
            LoraAdapter.Load(m2, bin);
            var l1 = Logits(m1, Golden("clip-llama-gqa"));
            var l2 = Logits(m2, Golden("clip-llama-gqa"));
            Assert.That((l1 - plain).abs().max().ToSingle(), Is.GreaterThan(1e-3f), "the adapter changes the outputs");
            Assert.That((l1 - l2).abs().max().ToSingle(), Is.EqualTo(0f));
        }
        finally { Directory.Delete(dir, true); }
    }

    [TestCase("os_system.bin", "'posix.system'")]
    [TestCase("builtins_eval.bin", "'__builtin__.eval'")] // protocol 2 writes Python 2's module name
    [TestCase("parameter.bin", "'torch._utils._rebuild_parameter'")]
    public void Pickle_naming_a_class_outside_the_allow_list_is_refused_without_running_it(string file, string named)
    {
        if (File.Exists(Marker)) File.Delete(Marker);
        var path = Bin("hostile", file);
        var e = Assert.Throws<BadInputException>(() => PyTorchBinFile.Open(path).Dispose())!;
        Assert.That(e.Message, Does.StartWith(path + ": ").And.Contain(named).And.Contain("collections.OrderedDict"));
        Assert.That(e.Message, Does.Not.Contain("\n"));
        Assert.That(File.Exists(Marker), Is.False, "nothing in the pickle ran");
    }

    [Test]
    public void PyBridge_alone_constructs_no_object_for_a_hostile_reduce_but_fails_with_an_unclear_error()
    {
        // What the scan protects against: Razorvine.Pickle (under PyBridge) turns posix.system into a placeholder and
        // throws when it is called with arguments; it runs nothing, but the error names neither file nor class clearly.
        if (File.Exists(Marker)) File.Delete(Marker);
        using var stream = File.OpenRead(Bin("hostile", "os_system.bin"));
        var e = Assert.Catch(() => PyTorchUnpickler.UnpickleStateDict(stream))!;
        TestContext.Out.WriteLine($"PyBridge: {e.GetType().Name}: {e.Message}");
        Assert.That(File.Exists(Marker), Is.False);
    }

    [Test]
    public void State_dict_with_a_non_tensor_value_is_refused()
    {
        var path = Bin("hostile", "non_tensor.bin");
        var e = Assert.Throws<BadInputException>(() => PyTorchBinFile.Open(path).Dispose())!;
        Assert.That(e.Message, Does.Contain("'step'").And.Contain("not a tensor"));
    }

    [Test]
    public void Legacy_format_is_refused_clearly()
    {
        var path = Bin("hostile", "legacy.bin");
        var e = Assert.Throws<BadInputException>(() => PyTorchBinFile.Open(path).Dispose())!;
        Assert.That(e.Message, Does.StartWith(path + ": ").And.Contain("legacy"));
    }

    [Test]
    public void Hostile_pytorch_model_bin_in_a_model_folder_exits_2_from_the_cli()
    {
        if (File.Exists(Marker)) File.Delete(Marker);
        var dir = TestPaths.NewTempDir("bin-cli");
        try
        {
            var model = Path.Combine(dir, "m");
            RandomCheckpoint.Write(model, TestPaths.Words);
            File.Delete(Path.Combine(model, "model.safetensors"));
            File.Copy(Bin("hostile", "os_system.bin"), Path.Combine(model, "pytorch_model.bin"));
            var image = Path.Combine(Fixtures, "images", "inputs", "grace_171x200_grey.png");
            var r = Cli.CliRunner.Run(dir, "caption", "--model", model, image);
            Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
            Assert.That(r.Stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
            Assert.That(r.Stderr, Does.Contain("pytorch_model.bin").And.Contain("'posix.system'"));
            Assert.That(File.Exists(Marker), Is.False);
        }
        finally { Directory.Delete(dir, true); }
    }

    private static string Rewrite(string dir, string source, Action<ZipArchive> edit)
    {
        var path = Path.Combine(dir, Guid.NewGuid().ToString("N")[..8] + ".bin");
        File.Copy(source, path);
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Update)) edit(zip);
        return path;
    }

    [Test]
    public void Storage_shorter_than_its_tensor_is_refused()
    {
        var dir = TestPaths.NewTempDir("bin-short");
        try
        {
            var path = Rewrite(dir, Bin("dtypes.bin"), zip =>
            {
                var entry = zip.Entries.First(e => e.FullName.EndsWith("data/0"));
                string name = entry.FullName;
                entry.Delete();
                using var s = zip.CreateEntry(name, CompressionLevel.NoCompression).Open();
                s.Write(new byte[3]);
            });
            var e = Assert.Throws<BadInputException>(() => PyTorchBinFile.Open(path).Dispose())!;
            Assert.That(e.Message, Does.Contain("needs").And.Contain("storage holds 3"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void Truncated_and_garbage_files_are_refused_with_bad_input()
    {
        var dir = TestPaths.NewTempDir("bin-fuzz");
        try
        {
            var bytes = File.ReadAllBytes(Bin("dtypes.bin"));
            var rng = new Random(7);
            int refused = 0;
            for (int i = 0; i < 60; i++)
            {
                var mutated = (byte[])bytes.Clone();
                if (i < 20) mutated = mutated.Take(rng.Next(1, bytes.Length - 1)).ToArray();
                else for (int k = 0; k < 1 + i % 5; k++) mutated[rng.Next(mutated.Length)] ^= (byte)rng.Next(1, 256);
                var path = Path.Combine(dir, $"m{i}.bin");
                File.WriteAllBytes(path, mutated);
                try
                {
                    using var f = PyTorchBinFile.Open(path);
                    foreach (var name in f.Shapes.Keys) { using var t = zeros(f.Shapes[name]); f.ReadInto(name, t); }
                }
                catch (BadInputException e) { refused++; Assert.That(e.Message, Does.StartWith(path + ": "), e.Message); }
            }
            Assert.That(refused, Is.GreaterThanOrEqualTo(20), "at least every truncated file is refused");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void Scanner_refuses_opcodes_that_build_arbitrary_objects()
    {
        // protocol 2: PROTO 2, GLOBAL 'collections OrderedDict', EMPTY_TUPLE, NEWOBJ, STOP
        byte[] pickle = [0x80, 2, (byte)'c', .. "collections\nOrderedDict\n"u8.ToArray(), (byte)')', 0x81, (byte)'.'];
        var e = Assert.Throws<BadInputException>(() => PickleScanner.Scan("x.pkl", pickle))!;
        Assert.That(e.Message, Does.Contain("opcode 0x81"));
        // INST names a class inline: refused as an opcode
        byte[] inst = [0x80, 2, (byte)'(', (byte)'i', .. "os\nsystem\n"u8.ToArray(), (byte)'.'];
        Assert.Throws<BadInputException>(() => PickleScanner.Scan("x.pkl", inst));
        // STACK_GLOBAL with a name off the list
        byte[] stackGlobal = [0x80, 4, 0x8c, 2, (byte)'o', (byte)'s', 0x8c, 6, .. "system"u8.ToArray(), 0x93, (byte)'.'];
        Assert.That(Assert.Throws<BadInputException>(() => PickleScanner.Scan("x.pkl", stackGlobal))!.Message, Does.Contain("'os.system'"));
    }
}
