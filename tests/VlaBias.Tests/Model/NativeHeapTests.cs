using NUnit.Framework;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Tests.Model;

/// <summary>Freed tensor memory that glibc keeps in its heap goes back to the system once the resident set has grown.</summary>
[NonParallelizable]
public class NativeHeapTests
{
    [Test]
    public void A_resident_set_grown_by_freed_tensors_is_trimmed_after_a_forward_and_an_unchanged_one_is_not()
    {
        Assert.That(OperatingSystem.IsLinux(), Is.True, "glibc's heap is what this checks (the project runs on Linux)");
        Assert.That(NativeHeap.Trim(), Is.True, "malloc_trim is there on this Linux");
        Thread.Sleep(150);
        int trims = NativeHeap.Trims;
        NativeHeap.AfterForward();
        Assert.That(NativeHeap.Trims, Is.EqualTo(trims), "nothing grew since the trim");
        long before = NativeHeap.ResidentBytes()!.Value;

        // 6,000 tensors of 64 KiB (under glibc's mmap threshold, so from its heap), each followed by a small one that
        // stays: the big ones' freed chunks cannot merge into the top of the heap, so glibc keeps them resident
        var keep = new List<Tensor>();
        var big = new List<Tensor>();
        for (int i = 0; i < 6000; i++)
        {
            big.Add(ones(16384));
            keep.Add(ones(16));
        }
        foreach (var t in big) t.Dispose();
        long holes = NativeHeap.ResidentBytes()!.Value;
        Assert.That(holes - before, Is.GreaterThan(NativeHeap.GrowthBytes), "the freed chunks stayed resident (the condition this fix is for)");

        Thread.Sleep(150);
        NativeHeap.AfterForward();
        long after = NativeHeap.ResidentBytes()!.Value;
        Assert.That(NativeHeap.Trims, Is.EqualTo(trims + 1));
        Assert.That(after, Is.LessThan(holes - 300L * (1 << 20)), $"resident {before >> 20} MiB, with holes {holes >> 20} MiB, after the trim {after >> 20} MiB");
        foreach (var t in keep) t.Dispose();
    }
}
