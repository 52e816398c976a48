using NUnit.Framework;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Tests.Weights;

/// <summary>The reader of untrusted files, fuzzed: damage either reads or is BadInputException, nothing else.</summary>
public class SafeTensorsFuzzTests
{
    private const int Iterations = 3000;
    private static readonly byte[] Interesting = "{}[]\":,-0123456789 eE.\\_FIBU"u8.ToArray();

    [Test]
    public void Damaged_headers_either_read_or_fail_with_bad_input_never_another_exception()
    {
        using var folder = new TempFolder();
        string validPath = folder.File("valid.safetensors");
        SafeTensors.Save(validPath, new Dictionary<string, Tensor>
        {
            ["w"] = RawSafeTensors.Noise(SafeDType.F32, [3, 4], seed: 1),
            ["b"] = RawSafeTensors.Noise(SafeDType.BF16, [4], seed: 2),
            ["ids"] = RawSafeTensors.Noise(SafeDType.I64, [2], seed: 3),
            ["s"] = RawSafeTensors.Noise(SafeDType.U8, [], seed: 4),
            ["e"] = RawSafeTensors.Noise(SafeDType.F16, [0], seed: 5),
        }, new Dictionary<string, string> { ["format"] = "pt" });
        byte[] valid = File.ReadAllBytes(validPath);
        int headerEnd = 8 + (int)BitConverter.ToUInt64(valid, 0);

        var random = new Random(20240611);
        string path = folder.File("fuzzed.safetensors");
        int accepted = 0, rejected = 0;
        for (int i = 0; i < Iterations; i++)
        {
            byte[] damaged = Damage(valid, headerEnd, random);
            File.WriteAllBytes(path, damaged);
            try
            {
                using var scope = NewDisposeScope();
                using var file = SafeTensorsFile.Open(path);
                foreach (var name in file.Entries.Keys) file.Read(name);
                accepted++;
            }
            catch (BadInputException)
            {
                rejected++;
            }
            catch (Exception e)
            {
                Assert.Fail($"iteration {i}: {e.GetType().Name}: {e.Message}\nfile: {Convert.ToHexString(damaged)}");
            }
        }

        TestContext.Out.WriteLine($"{accepted} damaged files read, {rejected} rejected as bad input");
        Assert.That(rejected, Is.GreaterThan(Iterations / 2), "most damage is detected");
        Assert.That(accepted + rejected, Is.EqualTo(Iterations));
    }

    /// <summary>
    /// A few random edits of the header, with the length prefix usually kept consistent (so the JSON parser and the
    /// checks behind it are reached) and sometimes left stale or damaged; now and then a truncation anywhere.
    /// </summary>
    private static byte[] Damage(byte[] valid, int headerEnd, Random random)
    {
        var header = new List<byte>(valid[8..headerEnd]);
        int edits = random.Next(1, 4);
        for (int e = 0; e < edits && header.Count > 0; e++)
        {
            int at = random.Next(header.Count);
            switch (random.Next(5))
            {
                case 0: header[at] = (byte)random.Next(256); break;
                case 1: header[at] = Interesting[random.Next(Interesting.Length)]; break;
                case 2: header[at] ^= (byte)(1 << random.Next(8)); break;
                case 3: header.RemoveAt(at); break;
                case 4: header.Insert(at, Interesting[random.Next(Interesting.Length)]); break;
            }
        }

        ulong prefix = random.Next(5) == 0 ? (ulong)(headerEnd - 8) : (ulong)header.Count;
        var bytes = new List<byte>(BitConverter.GetBytes(prefix));
        if (random.Next(10) == 0) bytes[random.Next(8)] = (byte)random.Next(256);
        bytes.AddRange(header);
        bytes.AddRange(valid[headerEnd..]);
        if (random.Next(10) == 0)
        {
            int cut = random.Next(bytes.Count);
            bytes.RemoveRange(cut, bytes.Count - cut);
        }
        return bytes.ToArray();
    }
}
