// What this CPU is, read once from /proc/cpuinfo: the model (name, family, model number) that keys the kernel
// calibration cache, and the flags that decide `--dtype auto` (avx512_bf16 or AMX → bf16 pays on large models).
// Off Linux, or when the file cannot be read, the CPU is "unknown" with no flags.
namespace VlaBias.Model;

public sealed record CpuInfo(string ModelName, string Family, string ModelNumber, IReadOnlySet<string> Flags)
{
    private static readonly Lazy<CpuInfo> Current = new(() => Read("/proc/cpuinfo"));

    /// <summary>This machine's CPU.</summary>
    public static CpuInfo This => Current.Value;

    /// <summary>Native bf16 matmul support: avx512_bf16, or AMX tiles with bf16 (amx_bf16).</summary>
    public bool HasBf16 => Flags.Contains("avx512_bf16") || Flags.Contains("amx_bf16");

    /// <summary>The key a measurement on this CPU is filed under: name, family and model, and the logical core count.</summary>
    public string Key => $"{ModelName} | family {Family} model {ModelNumber} | {Environment.ProcessorCount} cores";

    /// <summary>Parses the first processor block of a cpuinfo file; an unreadable file gives an unknown CPU.</summary>
    public static CpuInfo Read(string path)
    {
        string name = "unknown", family = "?", model = "?";
        var flags = new HashSet<string>(StringComparer.Ordinal);
        try
        {
            foreach (var line in File.ReadLines(path))
            {
                if (line.Length == 0 && name != "unknown") break; // end of the first processor's block
                int colon = line.IndexOf(':');
                if (colon < 0) continue;
                string key = line[..colon].Trim(), value = line[(colon + 1)..].Trim();
                switch (key)
                {
                    case "model name": name = value; break;
                    case "cpu family": family = value; break;
                    case "model": model = value; break;
                    case "flags": flags.UnionWith(value.Split(' ', StringSplitOptions.RemoveEmptyEntries)); break;
                }
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return new CpuInfo(name, family, model, flags);
    }
}
