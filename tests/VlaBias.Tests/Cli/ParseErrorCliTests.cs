using NUnit.Framework;

namespace VlaBias.Tests.Cli;

/// <summary>Command-line parse errors are bad input: one line on stderr, exit 2 (the real binary, as a script sees it).</summary>
public class ParseErrorCliTests
{
    private string dir = "";

    [OneTimeSetUp]
    public void Setup() => dir = TestPaths.NewTempDir("parse");

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    [TestCase(new[] { "ask", "--model", "m", "img.png" }, "Option '--question' is required", TestName = "Missing_required_option_exits_2_with_one_line")]
    [TestCase(new[] { "ask", "--model", "m", "img.png", "-q", "hi", "--frobnicate" }, "'--frobnicate'", TestName = "Unknown_option_exits_2_with_one_line")]
    [TestCase(new[] { "caption", "--beams", "abc", "img.png" }, "'abc' for option '--beams'", TestName = "Bad_option_value_exits_2_with_one_line")]
    [TestCase(new[] { "frobnicate" }, "'frobnicate'", TestName = "Unknown_command_exits_2_with_one_line")]
    [TestCase(new[] { "data", "audit" }, "Required argument missing", TestName = "Missing_argument_exits_2_with_one_line")]
    public void Parse_error(string[] args, string expected)
    {
        var r = CliRunner.Run(dir, args);
        Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
        var lines = r.Stderr.Trim().Split('\n');
        Assert.That(lines, Has.Length.EqualTo(1), r.Stderr);
        Assert.That(lines[0], Does.StartWith("vlatune: error: ").And.Contain(expected));
        Assert.That(r.Stdout, Is.Empty, "no help text on stdout for a parse error");
    }

    [Test]
    public void Help_still_exits_0()
    {
        var r = CliRunner.Run(dir, "ask", "--help");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        Assert.That(r.Stdout, Does.Contain("--question"));
    }
}
