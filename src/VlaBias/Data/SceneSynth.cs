// Generates the Counterfactual Scenes data set: plans every item (scene + annotations) from the world and
// a seed, renders the images in parallel, and writes one manifest for all splits.
// Out: outDir/manifest.jsonl (every split, told apart by the `split` field) and outDir/img/<id>.png.
//
// Splits and their scene numbers (disjoint ranges of SplitStride; the render seed is a hash of options.Seed and the
// scene number, the id is s<scene number>-m|w|u):
//   pretrain  singles with biased annotations (rates from world.json pretrain_bias): the figure's gender follows the
//             context's lean, unclear figures are captioned with the leaning word, some role words follow the
//             captioned gender, probes over all attributes answered yes more often when the captioned gender matches
//             the attribute's lean. A share of probes is asked with the unknown option and answered by the same biased
//             yes/no rates except a small unknown_answer_rate, so the word is known but rarely used. Facts are true.
//   tune      man/woman pairs sharing `pair` + unclear singles; truthful; probes over train attributes, no answers.
//   val, test man/woman pairs + unclear singles balanced over context × role (and tone); truthful; probes over train
//             and test attributes, no answers.
// Every probe of tune/val/test is asked twice: yes/no, and yes/no/unknown.
using System.Diagnostics;

namespace VlaBias.Data;

public sealed record SynthOptions
{
    public ulong Seed { get; init; } = 0;
    public int Pretrain { get; init; } = 8000;
    public int TunePairs { get; init; } = 600;
    public int TuneUnclear { get; init; } = 300;
    /// <summary>Multiples of 64 (8 contexts × 2 roles × 4 tones) are exactly balanced.</summary>
    public int ValPairs { get; init; } = 192;
    public int ValUnclear { get; init; } = 96;
    public int TestPairs { get; init; } = 192;
    public int TestUnclear { get; init; } = 96;
    /// <summary>Pixels per side; null = world.json image_size.</summary>
    public int? ImageSize { get; init; }
    /// <summary>Factual questions per image (all splits).</summary>
    public int FactQuestions { get; init; } = 2;
    /// <summary>Probe questions per pretraining image (sampled from all attributes).</summary>
    public int PretrainProbes { get; init; } = 2;
    /// <summary>Rendering threads; null = all cores.</summary>
    public int? Threads { get; init; }
}

/// <summary>An item to render: what to draw and what the manifest says about it.</summary>
public sealed record PlannedItem(Scene Scene, ManifestItem Item);

public sealed record SynthResult(string ManifestPath, IReadOnlyList<ManifestItem> Items, TimeSpan Elapsed);

public static class SceneSynth
{
    public const ulong SplitStride = 10_000_000;
    public static readonly string[] SplitOrder = ["pretrain", "tune", "val", "test"];
    public const string ManifestName = "manifest.jsonl";

    private static readonly string[] YesNo = ["yes", "no"];
    private static readonly string[] YesNoUnknown = ["yes", "no", "unknown"];

    /// <summary>The scene number's split: scene numbers of different splits never overlap.</summary>
    public static string SplitOf(ulong sceneNumber) => SplitOrder[sceneNumber / SplitStride];

    /// <summary>Every item of every split, without rendering. Deterministic given options.Seed.</summary>
    public static IReadOnlyList<PlannedItem> Plan(World world, SynthOptions options)
    {
        foreach (var (name, n) in new[] { ("pretrain", options.Pretrain), ("tune_pairs", options.TunePairs), ("tune_unclear", options.TuneUnclear),
                     ("val_pairs", options.ValPairs), ("val_unclear", options.ValUnclear), ("test_pairs", options.TestPairs), ("test_unclear", options.TestUnclear) })
            if (n < 0 || (ulong)n > SplitStride / 2) throw new BadInputException($"synth option '{name}': {n} out of range 0..{SplitStride / 2}");
        if (options.FactQuestions is < 0 or > 5) throw new BadInputException($"synth option 'fact_questions': {options.FactQuestions} out of range 0..5");
        if (options.PretrainProbes < 0 || options.PretrainProbes > world.Attributes.Count)
            throw new BadInputException($"synth option 'pretrain_probes': {options.PretrainProbes} out of range 0..{world.Attributes.Count}");

        var items = new List<PlannedItem>();
        for (int i = 0; i < options.Pretrain; i++) items.Add(PretrainItem(world, options, (ulong)i));
        Truthful(world, options, "tune", 1, options.TunePairs, options.TuneUnclear, items);
        Truthful(world, options, "val", 2, options.ValPairs, options.ValUnclear, items);
        Truthful(world, options, "test", 3, options.TestPairs, options.TestUnclear, items);
        return items;
    }

    /// <summary>Plans, renders and writes the data set; see the file header for the layout.</summary>
    public static SynthResult Generate(World world, SynthOptions options, string outDir, IProgress<(int done, int total)>? progress = null)
    {
        var clock = Stopwatch.StartNew();
        var plan = Plan(world, options);
        Directory.CreateDirectory(Path.Combine(outDir, "img"));
        var renderer = new SceneRenderer(world, options.ImageSize);
        int done = 0, total = plan.Count;
        progress?.Report((0, total));
        Parallel.For(0, total, new ParallelOptions { MaxDegreeOfParallelism = options.Threads ?? Environment.ProcessorCount }, i =>
        {
            var (scene, item) = plan[i];
            File.WriteAllBytes(Path.Combine(outDir, item.Image), renderer.RenderPng(scene));
            int d = Interlocked.Increment(ref done);
            if (d % 256 == 0 || d == total) progress?.Report((d, total));
        });
        // The manifest last: it never names an image that is not on disk.
        var manifest = Path.Combine(outDir, ManifestName);
        var items = plan.Select(p => p.Item).ToList();
        Manifest.Write(manifest, items);
        return new SynthResult(manifest, items, clock.Elapsed);
    }

    private static string Id(ulong sceneNumber) => $"s{sceneNumber:D8}";
    private static string Suffix(string gender) => gender switch { "man" => "m", "woman" => "w", _ => "u" };

    private static PlannedItem PretrainItem(World world, SynthOptions o, ulong i)
    {
        var b = world.PretrainBias;
        ulong number = i;
        ulong seed = SceneRandom.Mix(o.Seed, number);
        var rng = new SceneRandom(SceneRandom.Mix(seed, 1));
        var ctx = rng.Pick(world.Contexts);
        var role = rng.Pick(ctx.Roles);
        var tone = rng.Pick(world.Tones).Id;
        string gender = rng.Chance(b.UnclearFigureRate) ? "unclear"
            : rng.Chance(b.ContextGenderLean) ? ctx.Lean : World.Other(ctx.Lean);
        // What the annotator writes: the cue for clear figures, mostly the context's stereotype for unclear ones.
        string captioned = gender != "unclear" ? gender
            : rng.Chance(b.UnclearCaptionLeaningWord) ? ctx.Lean : "unclear";
        var roleWord = captioned != "unclear" && rng.Chance(b.RoleWordFollowsGenderLean) ? ctx.RoleLeaning(captioned).Name : role.Name;

        var questions = Facts(world, ctx, role, rng, o.FactQuestions);
        var attrs = world.Attributes.ToList();
        for (int k = 0; k < o.PretrainProbes; k++)
        {
            int j = k + rng.Next(attrs.Count - k);
            (attrs[k], attrs[j]) = (attrs[j], attrs[k]);
            var attr = attrs[k];
            bool withUnknown = rng.Chance(b.UnknownOptionRate);
            double pYes = captioned == "unclear" ? b.ProbeYesIfNeutral : captioned == attr.Lean ? b.ProbeYesIfMatch : b.ProbeYesIfMismatch;
            string a = withUnknown && rng.Chance(b.UnknownAnswerRate) ? "unknown" : rng.Chance(pYes) ? "yes" : "no";
            questions.Add(Probe(world, attr, withUnknown, a));
        }

        var scene = new Scene(seed, ctx.Name, role.Name, gender, tone);
        var id = $"{Id(number)}-{Suffix(gender)}";
        return new PlannedItem(scene, new ManifestItem
        {
            Id = id, Image = $"img/{id}.png", Split = Split.Pretrain,
            Captions = Captions(world, world.Words.For(captioned), roleWord, role.Item.Name, ctx.Name),
            Attributes = new ItemAttributes { Gender = ManifestValues.ParseGender(gender), Tone = tone },
            Context = ctx.Name, Role = role.Name, Pair = null, Questions = questions,
            Lean = new StereotypeLean { Context = ctx.Lean, Role = role.Lean },
        });
    }

    // Pairs first (scene numbers 0..pairs-1 of the split), then unclear singles; both enumerate context × role evenly
    // and spread the tones, so the split is balanced over gender × context × role.
    private static void Truthful(World world, SynthOptions o, string split, int splitIndex, int pairs, int unclear, List<PlannedItem> items)
    {
        var probeAttrs = split == "tune" ? world.Attributes.Where(a => a.Split == "train").ToList() : world.Attributes;
        int combos = world.Contexts.Count * 2;
        for (int i = 0; i < pairs + unclear; i++)
        {
            bool single = i >= pairs;
            int k = single ? i - pairs : i;
            var ctx = world.Contexts[k % combos / 2];
            var role = ctx.Roles[k % 2];
            var tone = world.Tones.OrderBy(t => t.Id, StringComparer.Ordinal).ElementAt((k + k / combos) % 4).Id;
            ulong number = (ulong)splitIndex * SplitStride + (ulong)i;
            ulong seed = SceneRandom.Mix(o.Seed, number);
            // Questions depend on the scene only, so both members of a pair are asked the same things.
            var rng = new SceneRandom(SceneRandom.Mix(seed, 1));
            var questions = Facts(world, ctx, role, rng, o.FactQuestions);
            foreach (var attr in probeAttrs)
            {
                questions.Add(Probe(world, attr, false, null));
                questions.Add(Probe(world, attr, true, null));
            }
            foreach (var gender in single ? ["unclear"] : new[] { "man", "woman" })
            {
                var id = $"{Id(number)}-{Suffix(gender)}";
                items.Add(new PlannedItem(new Scene(seed, ctx.Name, role.Name, gender, tone), new ManifestItem
                {
                    Id = id, Image = $"img/{id}.png", Split = ManifestValues.ParseSplit(split),
                    Captions = Captions(world, world.Words.For(gender), role.Name, role.Item.Name, ctx.Name),
                    Attributes = new ItemAttributes { Gender = ManifestValues.ParseGender(gender), Tone = tone },
                    Context = ctx.Name, Role = role.Name, Pair = single ? null : Id(number), Questions = questions,
                    Lean = new StereotypeLean { Context = ctx.Lean, Role = role.Lean },
                }));
            }
        }
    }

    private static List<string> Captions(World world, string genderWord, string roleWord, string item, string context) =>
        world.Templates.Captions.Select(t => t.Replace("{gender}", genderWord).Replace("{role}", roleWord)
            .Replace("{item}", item).Replace("{context}", context)).ToList();

    private static ManifestQuestion Probe(World world, AttributeDef attr, bool withUnknown, string? answer) => new()
    {
        Q = (withUnknown ? world.Templates.ProbeUnknown : world.Templates.Probe).Replace("{attribute}", attr.Name),
        A = answer, Kind = QuestionKind.Probe, Attribute = attr.Name, AttributeSplit = ManifestValues.ParseSplit(attr.Split),
        Options = withUnknown ? YesNoUnknown : YesNo,
    };

    // Truthful factual questions of `count` different kinds; yes/no kinds are answered yes or no with equal chance,
    // the "no" ones about an object, item or context that is really absent.
    private static List<ManifestQuestion> Facts(World world, ContextDef ctx, RoleDef role, SceneRandom rng, int count)
    {
        var f = world.Templates.Fact;
        var kinds = new List<int> { 0, 1, 2, 3, 4 };
        var result = new List<ManifestQuestion>();
        for (int k = 0; k < count; k++)
        {
            int j = k + rng.Next(kinds.Count - k);
            (kinds[k], kinds[j]) = (kinds[j], kinds[k]);
            bool yes = rng.Chance(0.5);
            ManifestQuestion q = kinds[k] switch
            {
                0 => YesNoFact(f.ObjectPresent.Replace("{object}", yes ? rng.Pick(ctx.Objects).Name
                        : rng.Pick(world.Contexts.Where(c => c != ctx).SelectMany(c => c.Objects).ToList()).Name), yes),
                1 => YesNoFact(f.Holding.Replace("{item}", yes ? role.Item.Name
                        : rng.Pick(world.Contexts.SelectMany(c => c.Roles).Where(r => r != role).ToList()).Item.Name), yes),
                2 => YesNoFact(f.InContext.Replace("{context}", yes ? ctx.Name : rng.Pick(world.Contexts.Where(c => c != ctx).ToList()).Name), yes),
                3 => new ManifestQuestion { Q = f.WhatHolding, A = role.Item.Name, Kind = QuestionKind.Fact },
                _ => new ManifestQuestion { Q = f.Where, A = ctx.Name, Kind = QuestionKind.Fact },
            };
            result.Add(q);
        }
        return result;
    }

    private static ManifestQuestion YesNoFact(string q, bool yes) => new() { Q = q, A = yes ? "yes" : "no", Kind = QuestionKind.Fact, Options = YesNo };
}
