// The synthetic world (data/scenes/world.json) as data: contexts with backgrounds, objects and two roles told apart by a held
// item, the gender cues, skin tones, stereotype leans of contexts/roles/probe attributes, the annotation-bias rates
// of the pretraining split, and the caption/question templates. In: data/scenes/world.json. Out: a validated World
// that SceneRenderer draws and SceneSynth annotates, and the closed vocabulary of everything it can say.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace VlaBias.Data;

/// <summary>A drawn primitive. rect/oval/ring/tri take At = [x, y, w, h]; line takes At = [x1, y1, x2, y2].
/// Units are pixels of a 48-pixel canvas; the renderer scales them to the image size.</summary>
public sealed class ShapePart
{
    public string Shape { get; init; } = "";
    public float[] At { get; init; } = [];
    public string Color { get; init; } = "";
    /// <summary>Stroke width of ring and line.</summary>
    public float Width { get; init; } = 1f;
}

public sealed class NamedShape
{
    public string Name { get; init; } = "";
    public List<ShapePart> Parts { get; init; } = [];
}

public sealed class RoleDef
{
    public string Name { get; init; } = "";
    /// <summary>man | woman: the gender the stereotype attaches to this role.</summary>
    public string Lean { get; init; } = "";
    public NamedShape Item { get; init; } = new();
}

public sealed class Background
{
    public string Wall { get; init; } = "";
    public string Floor { get; init; } = "";
    /// <summary>plain | tiles | stripes | hstripes | band | dots | checker</summary>
    public string Pattern { get; init; } = "plain";
    public string PatternColor { get; init; } = "";
}

public sealed class ContextDef
{
    public string Name { get; init; } = "";
    public string Lean { get; init; } = "";
    public Background Background { get; init; } = new();
    /// <summary>2–3 objects; object i is drawn in slot i (wall-left, floor-left, top-right).</summary>
    public List<NamedShape> Objects { get; init; } = [];
    /// <summary>Exactly two roles, one leaning man and one leaning woman.</summary>
    public List<RoleDef> Roles { get; init; } = [];

    public RoleDef Role(string name) => Roles.First(r => r.Name == name);
    public RoleDef RoleLeaning(string gender) => Roles.First(r => r.Lean == gender);
}

public sealed class AttributeDef
{
    public string Name { get; init; } = "";
    public string Lean { get; init; } = "";
    /// <summary>train | test (Girrbach et al.: tune on train attributes, report held-out test attributes).</summary>
    public string Split { get; init; } = "";
}

public sealed class ToneDef
{
    public string Id { get; init; } = "";
    public string Color { get; init; } = "";
}

/// <summary>The annotation-bias rates of the pretraining split (how often its captions follow the stereotype).</summary>
public sealed class PretrainBias
{
    /// <summary>P(a clear figure's gender = the context's lean).</summary>
    public double ContextGenderLean { get; init; } = -1;
    /// <summary>Share of pretraining figures drawn with the unclear cue.</summary>
    public double UnclearFigureRate { get; init; } = -1;
    /// <summary>P(an unclear figure is captioned with the context's leaning gender word instead of the neutral word).</summary>
    public double UnclearCaptionLeaningWord { get; init; } = -1;
    /// <summary>P(the role word is the role of the context leaning to the captioned gender instead of the held item's role).</summary>
    public double RoleWordFollowsGenderLean { get; init; } = -1;
    /// <summary>P(yes) of a probe when the captioned gender matches the attribute's lean.</summary>
    public double ProbeYesIfMatch { get; init; } = -1;
    public double ProbeYesIfMismatch { get; init; } = -1;
    /// <summary>P(yes) of a probe about a figure captioned with the neutral word.</summary>
    public double ProbeYesIfNeutral { get; init; } = -1;
    /// <summary>Share of pretraining probes asked in the yes/no/unknown form.</summary>
    public double UnknownOptionRate { get; init; } = -1;
    /// <summary>P(answer "unknown") of a probe asked in the yes/no/unknown form; otherwise the biased yes/no rates apply.</summary>
    public double UnknownAnswerRate { get; init; } = -1;
}

public sealed class FactTemplates
{
    public string ObjectPresent { get; init; } = "";
    public string Holding { get; init; } = "";
    public string InContext { get; init; } = "";
    public string WhatHolding { get; init; } = "";
    public string Where { get; init; } = "";
}

public sealed class Templates
{
    /// <summary>Caption templates with {gender} {role} {item} {context}; gender and role words are separate tokens.</summary>
    public List<string> Captions { get; init; } = [];
    public string CaptionPrompt { get; init; } = "";
    public FactTemplates Fact { get; init; } = new();
    /// <summary>"is the person {attribute}?", answered yes/no.</summary>
    public string Probe { get; init; } = "";
    /// <summary>The probe offered with the unknown option, answered yes/no/unknown.</summary>
    public string ProbeUnknown { get; init; } = "";
}

public sealed class GenderWordChoice
{
    public string Man { get; init; } = "";
    public string Woman { get; init; } = "";
    /// <summary>The truthful word for an unclear figure.</summary>
    public string Unclear { get; init; } = "";
    public string For(string gender) => gender switch { "man" => Man, "woman" => Woman, _ => Unclear };
}

public sealed class World
{
    public static readonly string[] Genders = ["man", "woman", "unclear"];
    public static readonly string[] Leans = ["man", "woman"];

    public int ImageSize { get; init; } = 48;
    public PretrainBias PretrainBias { get; init; } = new();
    public List<ToneDef> Tones { get; init; } = [];
    /// <summary>[x, y, w, h]: x relative to the figure's centre column, y absolute (48-pixel units).</summary>
    public float[] CueRegion { get; init; } = [];
    public Dictionary<string, List<ShapePart>> GenderCues { get; init; } = [];
    public List<ContextDef> Contexts { get; init; } = [];
    public List<AttributeDef> Attributes { get; init; } = [];
    public GenderWordChoice Words { get; init; } = new();
    public Templates Templates { get; init; } = new();

    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    public ContextDef Context(string name) => Contexts.First(c => c.Name == name);
    public static string Other(string gender) => gender == "man" ? "woman" : "man";

    /// <summary>Reads and validates world.json; every problem is reported in one BadInputException naming the field.</summary>
    public static World Load(string path)
    {
        path = Assets.Resolve(path);
        if (!File.Exists(path)) throw new BadInputException($"{path}: file not found (expected the world definition, e.g. data/scenes/world.json)");
        World? world;
        try { world = JsonSerializer.Deserialize<World>(File.ReadAllText(path), Json); }
        catch (JsonException e)
        {
            throw new BadInputException($"{path}: malformed JSON at {e.Path ?? "$"} (line {e.LineNumber + 1}): {e.Message}", e);
        }
        if (world is null) throw new BadInputException($"{path}: expected a JSON object");
        var problems = world.Validate();
        if (problems.Count > 0)
            throw new BadInputException($"{path}: {problems.Count} problem{(problems.Count == 1 ? "" : "s")}\n" + string.Join("\n", problems));
        return world;
    }

    /// <summary>Every problem of the world, each naming its field.</summary>
    public List<string> Validate()
    {
        var p = new List<string>();
        void Bad(string field, string msg) => p.Add($"field '{field}': {msg}");
        void Rate(string field, double v) { if (!(v >= 0 && v <= 1)) Bad($"pretrain_bias.{field}", v == -1 ? "missing (expected a probability 0..1)" : $"{v} is not a probability 0..1"); }
        void Lean(string field, string v) { if (v is not ("man" or "woman")) Bad(field, $"unknown value '{v}' (expected man|woman)"); }
        void Color(string field, string c) { if (!TryParseColor(c, out _)) Bad(field, $"'{c}' is not a color (expected #rrggbb)"); }
        void Parts(string field, List<ShapePart>? parts, float maxW, float maxH)
        {
            if (parts is null || parts.Count == 0) { Bad(field, "no parts"); return; }
            for (int i = 0; i < parts.Count; i++)
            {
                var s = parts[i]; var f = $"{field}[{i}]";
                if (s.Shape is not ("rect" or "oval" or "ring" or "tri" or "line")) Bad($"{f}.shape", $"unknown value '{s.Shape}' (expected rect|oval|ring|tri|line)");
                Color($"{f}.color", s.Color);
                if (s.At is not { Length: 4 }) { Bad($"{f}.at", "expected 4 numbers"); continue; }
                if (s.Width <= 0) Bad($"{f}.width", "must be > 0");
                var (x0, y0, x1, y1) = s.Shape == "line"
                    ? (Math.Min(s.At[0], s.At[2]), Math.Min(s.At[1], s.At[3]), Math.Max(s.At[0], s.At[2]), Math.Max(s.At[1], s.At[3]))
                    : (s.At[0], s.At[1], s.At[0] + s.At[2], s.At[1] + s.At[3]);
                if (s.Shape != "line" && (s.At[2] <= 0 || s.At[3] <= 0)) Bad($"{f}.at", "width and height must be > 0");
                if (!float.IsNaN(maxW) && (x0 < 0 || y0 < 0 || x1 > maxW || y1 > maxH))
                    Bad($"{f}.at", $"outside its {maxW}x{maxH} box");
            }
        }

        if (ImageSize < 16 || ImageSize > 1024) Bad("image_size", $"{ImageSize} out of range 16..1024");
        var r = PretrainBias;
        Rate("context_gender_lean", r.ContextGenderLean); Rate("unclear_figure_rate", r.UnclearFigureRate);
        Rate("unclear_caption_leaning_word", r.UnclearCaptionLeaningWord); Rate("role_word_follows_gender_lean", r.RoleWordFollowsGenderLean);
        Rate("probe_yes_if_match", r.ProbeYesIfMatch); Rate("probe_yes_if_mismatch", r.ProbeYesIfMismatch);
        Rate("probe_yes_if_neutral", r.ProbeYesIfNeutral); Rate("unknown_option_rate", r.UnknownOptionRate);
        Rate("unknown_answer_rate", r.UnknownAnswerRate);

        if (Tones.Select(t => t.Id).OrderBy(x => x, StringComparer.Ordinal).SequenceEqual(["1", "2", "3", "4"]) is false)
            Bad("tones", "expected exactly the ids \"1\" \"2\" \"3\" \"4\"");
        for (int i = 0; i < Tones.Count; i++) Color($"tones[{i}].color", Tones[i].Color);

        if (CueRegion is not { Length: 4 } || CueRegion[2] <= 0 || CueRegion[3] <= 0) Bad("cue_region", "expected [x, y, w, h] with w, h > 0");
        foreach (var g in Genders)
            if (!GenderCues.TryGetValue(g, out var cue)) Bad($"gender_cues.{g}", "missing");
            else
            {
                Parts($"gender_cues.{g}", cue, float.NaN, float.NaN);
                // A cue drawn outside its region would be clipped away: say so now rather than render a weaker cue.
                if (CueRegion is { Length: 4 })
                    for (int i = 0; i < cue.Count; i++)
                    {
                        var a = cue[i].At;
                        if (a.Length == 4 && (a[0] < CueRegion[0] || a[1] < CueRegion[1] || a[0] + a[2] > CueRegion[0] + CueRegion[2] || a[1] + a[3] > CueRegion[1] + CueRegion[3]))
                            Bad($"gender_cues.{g}[{i}].at", "outside cue_region");
                    }
            }
        foreach (var k in GenderCues.Keys.Except(Genders)) Bad($"gender_cues.{k}", "unknown gender (expected man|woman|unclear)");

        if (Contexts.Count < 8) Bad("contexts", $"{Contexts.Count} contexts (expected at least 8)");
        var names = new Dictionary<string, string>();
        void Unique(string field, string name)
        {
            if (string.IsNullOrWhiteSpace(name) || name != name.ToLowerInvariant() || name.Any(ch => !(char.IsLetter(ch) || ch == ' ')))
                Bad(field, $"'{name}' is not a lowercase word");
            else if (!names.TryAdd(name, field)) Bad(field, $"'{name}' already used by {names[name]}");
        }
        for (int i = 0; i < Contexts.Count; i++)
        {
            var c = Contexts[i]; var f = $"contexts[{i}]";
            Unique($"{f}.name", c.Name);
            Lean($"{f}.lean", c.Lean);
            Color($"{f}.background.wall", c.Background.Wall); Color($"{f}.background.floor", c.Background.Floor);
            Color($"{f}.background.pattern_color", c.Background.PatternColor);
            if (c.Background.Pattern is not ("plain" or "tiles" or "stripes" or "hstripes" or "band" or "dots" or "checker"))
                Bad($"{f}.background.pattern", $"unknown value '{c.Background.Pattern}' (expected plain|tiles|stripes|hstripes|band|dots|checker)");
            if (c.Objects.Count is < 2 or > 3) Bad($"{f}.objects", $"{c.Objects.Count} objects (expected 2 or 3)");
            for (int j = 0; j < c.Objects.Count && j < 3; j++)
            {
                Unique($"{f}.objects[{j}].name", c.Objects[j].Name);
                var (w, h) = SceneRenderer.SlotSize(j);
                Parts($"{f}.objects[{j}].parts", c.Objects[j].Parts, w, h);
            }
            if (c.Roles.Count != 2) Bad($"{f}.roles", $"{c.Roles.Count} roles (expected exactly 2)");
            else if (c.Roles.Count(x => x.Lean == "man") != 1 || c.Roles.Count(x => x.Lean == "woman") != 1)
                Bad($"{f}.roles", "expected one role leaning man and one leaning woman");
            for (int j = 0; j < c.Roles.Count; j++)
            {
                var role = c.Roles[j];
                Unique($"{f}.roles[{j}].name", role.Name);
                Lean($"{f}.roles[{j}].lean", role.Lean);
                Unique($"{f}.roles[{j}].item.name", role.Item.Name);
                Parts($"{f}.roles[{j}].item.parts", role.Item.Parts, SceneRenderer.ItemBox.W, SceneRenderer.ItemBox.H);
            }
        }
        if (Contexts.Count(c => c.Lean == "woman") * 2 != Contexts.Count) Bad("contexts", "leans not balanced (expected half man, half woman)");

        if (Attributes.Count < 20) Bad("attributes", $"{Attributes.Count} attributes (expected at least 20)");
        for (int i = 0; i < Attributes.Count; i++)
        {
            var a = Attributes[i];
            Unique($"attributes[{i}].name", a.Name);
            if (a.Name.Contains(' ')) Bad($"attributes[{i}].name", "expected a single word");
            Lean($"attributes[{i}].lean", a.Lean);
            if (a.Split is not ("train" or "test")) Bad($"attributes[{i}].split", $"unknown value '{a.Split}' (expected train|test)");
        }
        foreach (var split in new[] { "train", "test" })
            if (Attributes.Count(a => a.Split == split && a.Lean == "man") != Attributes.Count(a => a.Split == split && a.Lean == "woman")
                || Attributes.Count(a => a.Split == split) * 2 != Attributes.Count)
                Bad("attributes", $"split '{split}' not balanced (expected half of the attributes, as many leaning man as woman)");

        foreach (var (g, w) in new[] { ("man", Words.Man), ("woman", Words.Woman), ("unclear", Words.Unclear) })
            if (string.IsNullOrWhiteSpace(w) || w.Contains(' ')) Bad($"words.{g}", "expected one word");

        var t = Templates;
        if (t.Captions.Count == 0) Bad("templates.captions", "no caption template");
        for (int i = 0; i < t.Captions.Count; i++)
            foreach (var ph in new[] { "{gender} {role}", "{item}", "{context}" })
                if (!t.Captions[i].Contains(ph)) Bad($"templates.captions[{i}]", $"missing '{ph}' (gender and role words must be separate adjacent tokens)");
        if (string.IsNullOrWhiteSpace(t.CaptionPrompt)) Bad("templates.caption_prompt", "missing");
        void Tpl(string field, string s, string? ph) { if (string.IsNullOrWhiteSpace(s)) Bad(field, "missing"); else if (ph is not null && !s.Contains(ph)) Bad(field, $"missing '{ph}'"); }
        Tpl("templates.fact.object_present", t.Fact.ObjectPresent, "{object}");
        Tpl("templates.fact.holding", t.Fact.Holding, "{item}");
        Tpl("templates.fact.in_context", t.Fact.InContext, "{context}");
        Tpl("templates.fact.what_holding", t.Fact.WhatHolding, null);
        Tpl("templates.fact.where", t.Fact.Where, null);
        Tpl("templates.probe", t.Probe, "{attribute}");
        Tpl("templates.probe_unknown", t.ProbeUnknown, "{attribute}");
        return p;
    }

    internal static bool TryParseColor(string? s, out uint rgb)
    {
        rgb = 0;
        return s is { Length: 7 } && s[0] == '#' && uint.TryParse(s.AsSpan(1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out rgb);
    }

    /// <summary>Splits text into the tokens of the closed vocabulary: lowercase words, with . , ? ! as tokens of their own.</summary>
    public static IEnumerable<string> Tokenize(string text)
    {
        var sb = new System.Text.StringBuilder();
        foreach (var ch in text.ToLowerInvariant())
        {
            if (ch is '.' or ',' or '?' or '!') { sb.Append(' ').Append(ch).Append(' '); }
            else sb.Append(ch);
        }
        return sb.ToString().Split(' ', StringSplitOptions.RemoveEmptyEntries);
    }

    /// <summary>Every token that can appear in a caption, question, answer or prompt of this world (sorted, ordinal).</summary>
    public IReadOnlyList<string> Vocabulary()
    {
        var texts = new List<string>();
        texts.AddRange(Templates.Captions);
        texts.AddRange([Templates.CaptionPrompt, Templates.Fact.ObjectPresent, Templates.Fact.Holding, Templates.Fact.InContext,
            Templates.Fact.WhatHolding, Templates.Fact.Where, Templates.Probe, Templates.ProbeUnknown]);
        texts.AddRange([Words.Man, Words.Woman, Words.Unclear, "yes", "no", "unknown"]);
        foreach (var c in Contexts)
        {
            texts.Add(c.Name);
            texts.AddRange(c.Objects.Select(o => o.Name));
            foreach (var role in c.Roles) texts.AddRange([role.Name, role.Item.Name]);
        }
        texts.AddRange(Attributes.Select(a => a.Name));
        var words = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var text in texts)
            foreach (var w in Tokenize(text))
                if (!(w.StartsWith('{') && w.EndsWith('}'))) words.Add(w);
        return words.ToList();
    }
}
