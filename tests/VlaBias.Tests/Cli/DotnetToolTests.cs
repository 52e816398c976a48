using System.Diagnostics;
using NUnit.Framework;
using VlaBias.Tests.Data;

namespace VlaBias.Tests.Cli;

/// <summary>
/// `dotnet pack` of the CLI gives a .NET tool package; installed into a tool path it runs from a folder outside the
/// checkout: TorchSharp loads (the packed libLibTorchSharp.so carries the Debian 12 fix) and tiny-base, recipes and
/// word lists come from the package's assets/. About 1.5 min: packing compresses libtorch (a 160 MB package).
/// </summary>
public class DotnetToolTests
{
    private static (int Code, string Out, string Err) Run(string exe, string workDir, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workDir };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment.Remove("VLATUNE_HOME");
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(600_000)) { p.Kill(true); throw new TimeoutException($"{exe} {string.Join(' ', args)}"); }
        return (p.ExitCode, o.Result, e.Result);
    }

    [Test]
    public void Packed_tool_installs_and_captions_from_a_folder_outside_the_checkout()
    {
        var tmp = TestPaths.NewTempDir("tool");
        try
        {
            // The configuration the tests were built in (…/bin/<Configuration>/net10.0/<rid>/): pack reuses that build.
            var parts = AppContext.BaseDirectory.TrimEnd('/').Split('/');
            string configuration = parts[Array.LastIndexOf(parts, "bin") + 1];
            string pkg = Path.Combine(tmp, "pkg"), tools = Path.Combine(tmp, "tools"), work = Path.Combine(tmp, "work");
            Directory.CreateDirectory(work);
            var pack = Run("dotnet", RepoPaths.Root, "pack", "src/VlaBias.Cli/VlaBias.Cli.csproj", "-c", configuration, "--no-build",
                "-o", pkg, $"-p:PublishDir={Path.Combine(tmp, "publish")}/", "-nologo");
            Assert.That(pack.Code, Is.EqualTo(0), pack.Out + pack.Err);
            Assert.That(Directory.GetFiles(pkg, "vlatune.*.nupkg"), Has.Length.EqualTo(1));

            // Only the local folder as a source, so nothing of the same name elsewhere can be installed instead.
            var config = Path.Combine(tmp, "nuget.config");
            File.WriteAllText(config, $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration><packageSources><clear /><add key="local" value="{pkg}" /></packageSources></configuration>
                """);
            var install = Run("dotnet", work, "tool", "install", "--tool-path", tools, "--configfile", config, "vlatune");
            Assert.That(install.Code, Is.EqualTo(0), install.Out + install.Err);

            string exe = Path.Combine(tools, "vlatune");
            var help = Run(exe, work, "--help");
            Assert.That(help.Code, Is.EqualTo(0), help.Err);
            Assert.That(help.Out, Does.Contain("caption"));

            var image = Path.Combine(work, "grace.png");
            File.Copy(Path.Combine(AppContext.BaseDirectory, "Fixtures", "images", "inputs", "grace_171x200_grey.png"), image);
            var caption = Run(exe, work, "caption", "grace.png", "--max-new-tokens", "6");
            Assert.That(caption.Code, Is.EqualTo(0), caption.Err);
            Assert.That(caption.Out, Does.Match(@"^grace\.png\t\w+"), "a caption from the packaged tiny-base");
            Assert.That(Directory.GetFileSystemEntries(work).Select(Path.GetFileName), Is.EquivalentTo(new[] { "grace.png" }), "captioning writes nothing into the working folder");
        }
        finally { Directory.Delete(tmp, true); }
    }
}
