using NUnit.Framework;

namespace VlaBias.Tests.Cli;

/// <summary>`vlatune eval` refuses resample counts no confidence interval can be computed from, as bad input (exit 2)
/// naming where the count came from, before any model is loaded.</summary>
public class EvalCliTests
{
    private string dir = "";

    [OneTimeSetUp]
    public void Setup() => dir = TestPaths.NewTempDir("evalcli");

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    [TestCase("0")]
    [TestCase("-3")]
    public void A_bootstrap_option_below_one_is_bad_input_naming_the_option_and_value(string value)
    {
        var suite = Path.Combine(dir, "ok.yaml");
        File.WriteAllText(suite, "name: ok\n");
        var r = CliRunner.Run(dir, "eval", "--model", "no-such-model", "--suite", suite, "--out", Path.Combine(dir, "out"), "--bootstrap", value);
        Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
        Assert.That(r.Stderr.Trim(), Is.EqualTo($"vlatune: error: --bootstrap: expected at least 1 resample, got {value}"));
        Assert.That(Directory.Exists(Path.Combine(dir, "out")), Is.False, "nothing written");
    }

    [Test]
    public void A_suite_bootstrap_below_one_is_bad_input_naming_the_suite_file_and_key()
    {
        var suite = Path.Combine(dir, "zero.yaml");
        File.WriteAllText(suite, "name: zero\nbootstrap: 0\n");
        var r = CliRunner.Run(dir, "eval", "--model", "no-such-model", "--suite", suite, "--out", Path.Combine(dir, "out2"));
        Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
        Assert.That(r.Stderr.Trim(), Is.EqualTo($"vlatune: error: {suite}: key 'bootstrap': expected at least 1 resample, got 0"));
    }

    [Test]
    public void A_bootstrap_of_one_is_accepted_by_the_suite()
    {
        var suite = Path.Combine(dir, "one.yaml");
        File.WriteAllText(suite, "name: one\nbootstrap: 1\n");
        Assert.That(VlaBias.Evaluation.Suite.Load(suite).Bootstrap, Is.EqualTo(1));
        Assert.That(VlaBias.Evaluation.Suite.Load(suite, r => r.Override("bootstrap", VlaBias.Evaluation.Suite.BootstrapOption(7))).Bootstrap, Is.EqualTo(7));
    }
}
