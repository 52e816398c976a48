using NUnit.Framework;
using VlaBias.Model;

namespace VlaBias.Tests.Model;

/// <summary>How libtorch's OpenMP workers wait: chosen from the cores' load at start unless the user chose.</summary>
public class ThreadWaitPolicyTests
{
    private static string? NoEnv(string _) => null;

    [Test]
    public void Free_cores_get_a_short_spin_and_busy_cores_a_passive_wait()
    {
        var free = ThreadWaitPolicy.Choose(0, () => 0.2, NoEnv, cores: 2);
        Assert.That((free.Name, free.Value), Is.EqualTo(("GOMP_SPINCOUNT", ThreadWaitPolicy.Spin.ToString())));
        var busy = ThreadWaitPolicy.Choose(2, () => 1.3, NoEnv, cores: 2);
        Assert.That((busy.Name, busy.Value), Is.EqualTo(("OMP_WAIT_POLICY", "PASSIVE")));
        Assert.That(busy.Text, Does.Contain("1.3 threads of other processes"));
    }

    [Test]
    public void The_users_variables_and_a_single_thread_set_nothing_and_sample_nothing()
    {
        double Sampled() => throw new AssertionException("the cores were sampled");
        foreach (var name in new[] { "OMP_WAIT_POLICY", "GOMP_SPINCOUNT" })
        {
            var r = ThreadWaitPolicy.Choose(0, Sampled, n => n == name ? "ACTIVE" : null, cores: 2);
            Assert.That(r.Name, Is.Null, name);
        }
        Assert.That(ThreadWaitPolicy.Choose(1, Sampled, NoEnv, cores: 2).Name, Is.Null);
        Assert.That(ThreadWaitPolicy.Choose(0, Sampled, NoEnv, cores: 1).Name, Is.Null);
    }
}
