// Recipes: flat YAML files naming every option of a run ("lr: 1e-4"). A recipe is read once, at the edge;
// command-line options override its values; keys nobody asked for are an error naming the file and the key, so a
// typo never silently falls back to a default. The resolved values are written beside the run's outputs.
using System.Globalization;
using System.Text;
using YamlDotNet.RepresentationModel;

namespace VlaBias.Recipes;

public sealed class Recipe
{
    private readonly Dictionary<string, object> values = new(StringComparer.Ordinal);   // string or List<string>
    private readonly HashSet<string> used = new(StringComparer.Ordinal);
    private readonly Dictionary<string, object?> resolved = new(StringComparer.Ordinal);

    public Recipe(string? path = null) { Path = path; }

    public string? Path { get; }
    private string Where => Path ?? "command line";

    public static Recipe Load(string path)
    {
        path = Assets.Resolve(path);
        if (!File.Exists(path)) throw new BadInputException($"{path}: recipe not found");
        var r = new Recipe(path);
        var yaml = new YamlStream();
        try { yaml.Load(new StringReader(File.ReadAllText(path))); }
        catch (YamlDotNet.Core.YamlException e) { throw new BadInputException($"{path}: line {e.Start.Line}: not valid YAML ({e.Message})"); }
        if (yaml.Documents.Count == 0) return r;
        if (yaml.Documents[0].RootNode is not YamlMappingNode map) throw new BadInputException($"{path}: expected a mapping of option: value");
        foreach (var (k, v) in map.Children)
        {
            string key = ((YamlScalarNode)k).Value!.Replace('-', '_');
            r.values[key] = v switch
            {
                YamlScalarNode s => s.Value ?? "",
                YamlSequenceNode seq => seq.Children.Select(c => (c as YamlScalarNode)?.Value ?? throw new BadInputException($"{path}: key '{key}': list items must be plain values")).ToList(),
                _ => throw new BadInputException($"{path}: line {k.Start.Line}: key '{key}': nested mappings are not used in recipes; write flat keys"),
            };
        }
        return r;
    }

    /// <summary>Sets a value from the command line (wins over the recipe).</summary>
    public void Override(string key, object? value)
    {
        if (value is null) return;
        values[key] = value switch
        {
            IEnumerable<string> list when value is not string => list.ToList(),
            IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
            _ => value.ToString()!,
        };
    }

    private T Get<T>(string key, T dflt, Func<string, T?> parse, string expected)
    {
        used.Add(key);
        T result = dflt;
        if (values.TryGetValue(key, out var raw))
        {
            if (raw is not string s) throw new BadInputException($"{Where}: key '{key}': expected {expected}, got a list");
            result = parse(s) ?? throw new BadInputException($"{Where}: key '{key}': expected {expected}, got '{s}'");
        }
        resolved[key] = result;
        return result;
    }

    public string Str(string key, string dflt) => Get(key, dflt, s => s, "a string");
    public string? OptStr(string key) { used.Add(key); var v = values.TryGetValue(key, out var r) && r is string s && s.Length > 0 ? s : null; resolved[key] = v; return v; }
    public int Int(string key, int dflt) => Get<int?>(key, dflt, s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var i) ? i : null, "an integer")!.Value;
    public long Long(string key, long dflt) => Get<long?>(key, dflt, s => long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var i) ? i : null, "an integer")!.Value;
    public double Dbl(string key, double dflt) => Get<double?>(key, dflt, s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d : null, "a number")!.Value;
    public bool Bool(string key, bool dflt) => Get<bool?>(key, dflt, s => s.ToLowerInvariant() switch { "true" or "yes" or "1" => true, "false" or "no" or "0" => false, _ => null }, "true or false")!.Value;

    public string Choice(string key, string dflt, params string[] allowed)
    {
        var v = Str(key, dflt);
        if (!allowed.Contains(v)) throw new BadInputException($"{Where}: key '{key}': unknown value '{v}' (expected {string.Join(", ", allowed)})");
        return v;
    }

    public IReadOnlyList<string> List(string key, IReadOnlyList<string> dflt)
    {
        used.Add(key);
        IReadOnlyList<string> v = dflt;
        if (values.TryGetValue(key, out var raw))
            v = raw is List<string> l ? l : ((string)raw).Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        resolved[key] = v;
        return v;
    }

    /// <summary>Fails on keys that were given but never read (typos, options of another command).</summary>
    public void CheckAllUsed()
    {
        var unknown = values.Keys.Where(k => !used.Contains(k)).OrderBy(k => k).ToList();
        if (unknown.Count > 0)
            throw new BadInputException($"{Where}: unknown key{(unknown.Count > 1 ? "s" : "")} {string.Join(", ", unknown.Select(k => $"'{k}'"))} (see --help for the options)");
    }

    /// <summary>The resolved configuration as YAML (every option read, with its final value).</summary>
    public string ToYaml()
    {
        var sb = new StringBuilder("# resolved configuration of this run (recipe + command line + defaults)\n");
        foreach (var (k, v) in resolved.OrderBy(x => x.Key, StringComparer.Ordinal))
        {
            string text = v switch
            {
                null => "null",
                IReadOnlyList<string> l => "[" + string.Join(", ", l) + "]",
                IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
                bool b => b ? "true" : "false",
                _ => v.ToString()!,
            };
            sb.Append(k).Append(": ").Append(text).Append('\n');
        }
        return sb.ToString();
    }
}
