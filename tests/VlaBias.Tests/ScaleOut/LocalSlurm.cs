using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using NUnit.Framework;

namespace VlaBias.Tests.ScaleOut;

/// <summary>
/// A real single-node SLURM cluster on localhost for the tests: its own munged (private key and socket), slurmctld and
/// slurmd on free ports, every file in one temporary folder. Needs Debian's slurm-wlm and munge (.ci/run installs
/// them) and root (the daemons run as root, as on this project's CI). Dispose cancels every job and stops the daemons.
/// </summary>
public sealed class LocalSlurm : IDisposable
{
    public string Dir { get; }
    public string Conf { get; }
    public string Node { get; }
    private readonly string? previousConf;
    private readonly List<string> pidFiles = [];

    public LocalSlurm(int cpus = 2)
    {
        foreach (var tool in new[] { "munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo" })
            if (Which(tool) is null)
                Assert.Fail($"{tool} not found: the SLURM tests need Debian's slurm-wlm and munge (`apt-get install -y slurm-wlm munge`; .ci/run does it)");
        if (Environment.UserName != "root") Assert.Fail("the SLURM tests start slurmctld/slurmd/munged as root (as CI runs); run them as root");
        Dir = TestPaths.NewTempDir("slurm");
        Node = Run("hostname", "-s").Trim();
        Directory.CreateDirectory(Path.Combine(Dir, "munge"));
        Directory.CreateDirectory(Path.Combine(Dir, "state"));
        Directory.CreateDirectory(Path.Combine(Dir, "spool"));
        string key = Path.Combine(Dir, "munge", "munge.key");
        File.WriteAllBytes(key, System.Security.Cryptography.RandomNumberGenerator.GetBytes(1024));
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(key, UnixFileMode.UserRead);   // munged refuses a key others can read
        string socket = Path.Combine(Dir, "munge", "munge.socket");
        Start("munged", "--force", $"--key-file={key}", $"--socket={socket}", $"--pid-file={Dir}/munge/munged.pid",
            $"--seed-file={Dir}/munge/munged.seed", $"--log-file={Dir}/munge/munged.log");
        pidFiles.Add($"{Dir}/munge/munged.pid");
        int ctld = FreePort(), slurmd = FreePort();
        long memMb = File.ReadLines("/proc/meminfo").Where(l => l.StartsWith("MemTotal:")).Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024).First();
        Conf = Path.Combine(Dir, "slurm.conf");
        File.WriteAllLines(Conf,
        [
            "ClusterName=vlatune-test", $"SlurmctldHost={Node}", $"SlurmctldPort={ctld}", $"SlurmdPort={slurmd}",
            "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge", "CredType=cred/munge", $"AuthInfo=socket={socket}",
            $"StateSaveLocation={Dir}/state", $"SlurmdSpoolDir={Dir}/spool",
            $"SlurmctldPidFile={Dir}/slurmctld.pid", $"SlurmdPidFile={Dir}/slurmd.pid",
            $"SlurmctldLogFile={Dir}/slurmctld.log", $"SlurmdLogFile={Dir}/slurmd.log",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "ReturnToService=2", "MinJobAge=300",
            $"NodeName={Node} CPUs={cpus} RealMemory={memMb / 2} State=UNKNOWN",
            $"PartitionName=debug Nodes={Node} Default=YES State=UP MaxTime=INFINITE",
        ]);
        previousConf = Environment.GetEnvironmentVariable("SLURM_CONF");
        Environment.SetEnvironmentVariable("SLURM_CONF", Conf);   // sbatch/squeue of this process and of the vlatune it starts
        try
        {
            Start("slurmctld", "-f", Conf);
            pidFiles.Add($"{Dir}/slurmctld.pid");
            Start("slurmd", "-f", Conf);
            pidFiles.Add($"{Dir}/slurmd.pid");
            var sw = Stopwatch.StartNew();
            while (!Run("sinfo", "--noheader", "--format=%T").Contains("idle"))
            {
                if (sw.Elapsed > TimeSpan.FromSeconds(60)) Assert.Fail($"the SLURM node did not become idle in 60 s:\n{Logs()}");
                Thread.Sleep(250);
            }
        }
        catch { Dispose(); throw; }
    }

    /// <summary>The daemons' logs, for failure messages.</summary>
    public string Logs() => string.Join("\n", new[] { "slurmctld.log", "slurmd.log", "munge/munged.log" }
        .Select(f => Path.Combine(Dir, f)).Where(File.Exists).Select(f => $"--- {f}\n{string.Join("\n", File.ReadLines(f).TakeLast(20))}"));

    /// <summary>Jobs (array tasks one by one) still queued or running: "id state".</summary>
    public List<string> Queue() => Run("squeue", "--noheader", "--array", "--format=%i %T")
        .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();

    public void WaitForEmptyQueue(TimeSpan timeout)
    {
        var sw = Stopwatch.StartNew();
        while (Queue().Count > 0)
        {
            if (sw.Elapsed > timeout) Assert.Fail($"jobs still queued after {timeout}: {string.Join("; ", Queue())}");
            Thread.Sleep(500);
        }
    }

    public void Dispose()
    {
        try { Run("scancel", "--full", "--user=root"); } catch (Exception) { }
        try
        {
            var sw = Stopwatch.StartNew();
            while (sw.Elapsed < TimeSpan.FromSeconds(20) && Queue().Count > 0) Thread.Sleep(250);
        }
        catch (Exception) { }
        // slurmd first (it ends job steps), then the controller, then munged: each by its own pid file.
        foreach (var f in Enumerable.Reverse(pidFiles))
        {
            if (!File.Exists(f) || !int.TryParse(File.ReadAllText(f).Trim(), out var pid)) continue;
            try
            {
                using var p = Process.GetProcessById(pid);
                Run("kill", "-TERM", pid.ToString());
                if (!p.WaitForExit(10_000)) Run("kill", "-KILL", pid.ToString());
            }
            catch (ArgumentException) { }   // already gone
            catch (InvalidOperationException) { }
        }
        Environment.SetEnvironmentVariable("SLURM_CONF", previousConf);
        try { Directory.Delete(Dir, true); } catch (IOException) { }
    }

    private static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    private static string? Which(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Concat(["/usr/sbin", "/sbin"])
        .Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);

    /// <summary>Starts a daemon (it forks into the background) and checks that the starter exited cleanly.</summary>
    private void Start(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(Which(tool)!) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["SLURM_CONF"] = Conf ?? "";
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var o = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(30_000)) { p.Kill(); Assert.Fail($"{tool} did not return"); }
        if (p.ExitCode != 0) Assert.Fail($"{tool} {string.Join(' ', args)} exited {p.ExitCode}: {err.Result}{o.Result}\n{Logs()}");
    }

    public static string Run(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(Which(tool) ?? tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string o = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return o + err.Result;
    }
}
