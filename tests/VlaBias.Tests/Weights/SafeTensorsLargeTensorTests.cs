using NUnit.Framework;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Tests.Weights;

/// <summary>
/// A tensor above 2 GiB, where one Span cannot cover the data. Explicit (about 5 GB of memory and 2 GB of disk);
/// the everyday tests reach the same chunked code path with tiny chunks.
/// </summary>
public class SafeTensorsLargeTensorTests
{
    [Test, Explicit("needs ~5 GB of memory and 2 GB of disk")]
    public void Tensor_larger_than_2GiB_round_trips()
    {
        using var folder = new TempFolder();
        string path = folder.File("large.safetensors");
        long count = (1L << 31) + 24;
        using var large = randint(0, 256, [count], dtype: ScalarType.Byte);

        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["large"] = large });
        using var file = SafeTensorsFile.Open(path);
        using var read = file.Read("large");

        Assert.That(file.Entries["large"].End, Is.EqualTo(count));
        Assert.That(read.Equals(large), Is.True);
    }
}
