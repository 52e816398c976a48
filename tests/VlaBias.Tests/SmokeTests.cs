using NUnit.Framework;
using static TorchSharp.torch;
namespace VlaBias.Tests;
public class SmokeTests
{
    [Test]
    public void Torch_loads_and_multiplies()
    {
        var t = ones(3, 3);
        Assert.That(t.matmul(t).sum().item<float>(), Is.EqualTo(27f));
    }
}
