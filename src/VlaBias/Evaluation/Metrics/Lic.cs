using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace VlaBias.Evaluation.Metrics;

/// <summary>A caption and the gender of the person in its image (the class the leakage classifier predicts).</summary>
public sealed record LicCaption(string Caption, string Gender);

/// <summary>Settings of the LIC computation.</summary>
/// <param name="Seeds">how many seeded splits to average (Hirota et al. use 10; we default to 5)</param>
/// <param name="Seed">first seed; run s uses Seed + s</param>
/// <param name="TrainFraction">share of each (balanced) class used for training; the rest is the test split</param>
/// <param name="Epochs">full-batch gradient steps of the logistic regression</param>
/// <param name="LearningRate">gradient step size</param>
/// <param name="L2">L2 penalty on the weights (not the biases)</param>
public sealed record LicOptions(int Seeds = 5, int Seed = 0, double TrainFraction = 0.8, int Epochs = 300,
                                double LearningRate = 1.0, double L2 = 1e-3);

/// <param name="Lic"><c>lic</c>: mean over seeds of LicModel − LicHuman</param>
/// <param name="LicModel">leakage of the model captions, mean over seeds (LIC_M)</param>
/// <param name="LicHuman">leakage of the human (truthful) captions, mean over seeds (LIC_D)</param>
/// <param name="PerSeed">LIC of each seed (for a spread)</param>
/// <param name="NotComputable">why LIC cannot be computed on these captions (the values are then NaN), else null</param>
public sealed record LicResult(double Lic, double LicModel, double LicHuman, double[] PerSeed, string? NotComputable = null);

/// <summary>
/// Leakage for Image Captioning, LIC (Hirota, Nakashima &amp; Garcia 2022, "Quantifying Societal Bias Amplification
/// in Image Captioning", CVPR; rebnej/lick-caption-bias). metrics.json key <c>lic</c>. Values are fractions in
/// [0, 1]; multiply by 100 for the paper's scale.
/// <para>
/// Gender words (the caller's masculine and feminine lists) are replaced by a mask token. For each seed, each class
/// (gender) is shuffled and cut to the size of the smallest class (balanced), and split into train / test by
/// <see cref="LicOptions.TrainFraction"/>. A classifier f is trained on the masked train captions to predict the
/// gender, and the leakage score on the test split is (1/|test|) Σ 1[argmax f(y) = a]·max softmax f(y).
/// This is done separately for the model's captions (LIC_M) and the human captions of the same images (LIC_D);
/// LIC = LIC_M − LIC_D, averaged over seeds. With the same images and genders in the same order in both lists, both
/// get the same split.
/// </para>
/// <para>
/// Our classifier is a bag-of-words (word presence scaled to a unit-norm vector, vocabulary of the train split)
/// multinomial logistic regression
/// with L2, trained by full-batch gradient descent — deterministic, so the seed only chooses the split. Hirota et al.
/// use an LSTM or fine-tuned BERT; their absolute values are therefore not comparable to ours, only the construction.
/// </para>
/// </summary>
public static class Lic
{
    public const string MaskToken = "<mask>";

    /// <summary>The tokenized caption with every token in <paramref name="genderWords"/> replaced by <see cref="MaskToken"/>.</summary>
    public static string Mask(string caption, IReadOnlyCollection<string> genderWords) =>
        string.Join(' ', CaptionTokenizer.Tokens(caption).Select(t => genderWords.Contains(t) ? MaskToken : t));

    public static LicResult Compute(IReadOnlyList<LicCaption> modelCaptions, IReadOnlyList<LicCaption> humanCaptions,
                                    IReadOnlyCollection<string> masculineWords, IReadOnlyCollection<string> feminineWords,
                                    LicOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(modelCaptions);
        ArgumentNullException.ThrowIfNull(humanCaptions);
        var genderWords = GenderWords(masculineWords, feminineWords);
        return ComputeMasked(modelCaptions.Select(c => new LicCaption(Mask(c.Caption, genderWords), c.Gender)).ToArray(),
                             humanCaptions.Select(c => new LicCaption(Mask(c.Caption, genderWords), c.Gender)).ToArray(), options);
    }

    /// <summary>The words <see cref="Compute"/> masks: the masculine and feminine lists together.</summary>
    public static HashSet<string> GenderWords(IReadOnlyCollection<string> masculineWords, IReadOnlyCollection<string> feminineWords) =>
        masculineWords.Concat(feminineWords).ToHashSet(StringComparer.Ordinal);

    /// <summary><see cref="Compute"/> on captions already masked with <see cref="Mask"/> (a bootstrap masks each caption once).</summary>
    public static LicResult ComputeMasked(IReadOnlyList<LicCaption> maskedModel, IReadOnlyList<LicCaption> maskedHuman, LicOptions? options = null)
    {
        var prepared = new Prepared(maskedModel, maskedHuman);
        return prepared.Compute(Enumerable.Range(0, prepared.Count).ToArray(), options);
    }

    /// <summary>
    /// Masked model and human captions split into word ids once, for LIC on many subsets of them (bootstrap resamples,
    /// as positions with repeats): <c>Compute(sample)</c> equals <see cref="ComputeMasked"/> on the captions at those
    /// positions. Safe to call from several threads.
    /// </summary>
    public sealed class Prepared
    {
        readonly Documents _model, _human;

        public Prepared(IReadOnlyList<LicCaption> maskedModel, IReadOnlyList<LicCaption> maskedHuman)
        {
            ArgumentNullException.ThrowIfNull(maskedModel);
            ArgumentNullException.ThrowIfNull(maskedHuman);
            _model = new Documents(maskedModel);
            _human = new Documents(maskedHuman);
        }

        /// <summary>The number of model captions (positions of a sample index them).</summary>
        public int Count => _model.Genders.Length;

        public LicResult Compute(IReadOnlyList<int> sample, LicOptions? options = null)
        {
            ArgumentNullException.ThrowIfNull(sample);
            return Compute(sample.ToArray(), options);
        }

        /// <summary><see cref="Compute(IReadOnlyList{int}, LicOptions?)"/> of positions.</summary>
        public LicResult Compute(ReadOnlySpan<int> sample, LicOptions? options = null)
        {
            options ??= new LicOptions();
            if (options.Seeds < 1) throw new ArgumentOutOfRangeException(nameof(options), options.Seeds, "LIC needs at least one seed");
            // A small suite (or a bootstrap resample of one) can lack a gender or the captions for a train/test split.
            if ((NotComputable(_model, sample, options) ?? NotComputable(_human, sample, options)) is string why)
                return new LicResult(double.NaN, double.NaN, double.NaN, [], why);
            var perSeed = new double[options.Seeds];
            double sumModel = 0, sumHuman = 0;
            for (int s = 0; s < options.Seeds; s++)
            {
                double m = LeakageScore(_model, sample, options, options.Seed + s);
                double h = LeakageScore(_human, sample, options, options.Seed + s);
                perSeed[s] = m - h;
                sumModel += m;
                sumHuman += h;
            }
            return new LicResult(perSeed.Average(), sumModel / options.Seeds, sumHuman / options.Seeds, perSeed);
        }
    }

    /// <summary>
    /// Leakage of already-masked captions for one seed: train on a balanced split, return the mean over the test split
    /// of 1[correct]·(max class probability).
    /// </summary>
    public static double LeakageScore(IReadOnlyList<LicCaption> maskedCaptions, LicOptions options, int seed) =>
        LeakageScore(new Documents(maskedCaptions), Enumerable.Range(0, maskedCaptions.Count).ToArray(), options, seed);

    // Captions as word ids: per caption its distinct words in first-occurrence order (a bag of words' features in the
    // order the classifier adds them), the id of its text (equal texts have equal features, hence equal probabilities)
    // and its gender as an index into the genders in ordinal order.
    sealed class Documents
    {
        public readonly int[][] Words;
        public readonly int[] Text;
        public readonly int[] Gender;
        public readonly string[] Genders;
        public readonly int WordCount, TextCount, GenderCount;

        public Documents(IReadOnlyList<LicCaption> captions)
        {
            var words = new Dictionary<string, int>(StringComparer.Ordinal);
            var texts = new Dictionary<string, int>(StringComparer.Ordinal);
            Words = new int[captions.Count][];
            Text = new int[captions.Count];
            Genders = new string[captions.Count];
            for (int i = 0; i < captions.Count; i++)
            {
                var c = captions[i];
                Words[i] = c.Caption.Split(' ', StringSplitOptions.RemoveEmptyEntries)
                    .Select(w => words.TryGetValue(w, out int id) ? id : words[w] = words.Count).Distinct().ToArray();
                if (!texts.TryGetValue(c.Caption, out Text[i])) texts[c.Caption] = Text[i] = texts.Count;
                Genders[i] = c.Gender;
            }
            var names = Genders.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
            Gender = Genders.Select(g => names.IndexOf(g)).ToArray();
            WordCount = words.Count;
            TextCount = texts.Count;
            GenderCount = names.Count;
        }
    }

    // Why the balanced split of LeakageScore cannot be made on this sample, else null. Class sizes do not depend on the
    // seed (it only shuffles within a class), so one check serves every seed.
    static string? NotComputable(Documents docs, ReadOnlySpan<int> sample, LicOptions options)
    {
        var perGender = new int[docs.GenderCount];
        foreach (int i in sample) perGender[docs.Gender[i]]++;
        var present = perGender.Where(n => n > 0).ToArray();
        if (present.Length < 2) return $"LIC needs captions of at least two genders ({present.Length} here)";
        int perClass = present.Min(), trainPerClass = (int)Math.Round(options.TrainFraction * perClass);
        return trainPerClass < 1 || trainPerClass >= perClass
            ? $"LIC needs at least one train and one test caption per gender (smallest gender has {perClass}, train fraction {options.TrainFraction.ToString(System.Globalization.CultureInfo.InvariantCulture)})"
            : null;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static double LeakageScore(Documents docs, ReadOnlySpan<int> sample, LicOptions options, int seed)
    {
        // The sample's genders in ordinal order are the classes.
        var classOf = new int[docs.GenderCount];
        foreach (int i in sample) classOf[docs.Gender[i]] = 1;
        int classes = 0;
        for (int g = 0; g < classOf.Length; g++) classOf[g] = classOf[g] == 1 ? classes++ : -1;
        if (classes < 2) throw new ArgumentException("LIC needs captions of at least two genders");
        var rng = new SubtractiveRandom(seed);   // new Random(seed)'s stream
        var byClass = new int[classes][];
        for (int k = 0; k < classes; k++)
        {
            var members = new List<int>();
            for (int j = 0; j < sample.Length; j++) if (classOf[docs.Gender[sample[j]]] == k) members.Add(j);
            byClass[k] = Shuffle([.. members], rng);
        }
        int perClass = byClass.Min(c => c.Length);
        int trainPerClass = (int)Math.Round(options.TrainFraction * perClass);
        if (trainPerClass < 1 || trainPerClass >= perClass)
            throw new ArgumentException($"LIC needs at least one train and one test caption per gender (smallest gender has {perClass})");

        var train = new List<(int Doc, int Label)>();
        var test = new List<(int Doc, int Label)>();
        for (int k = 0; k < classes; k++)
            for (int j = 0; j < perClass; j++)
                (j < trainPerClass ? train : test).Add((sample[byClass[k][j]], k));

        var classifier = BagOfWordsLogisticRegression.Train(docs, train, classes, options);
        double score = 0;
        Span<double> p = stackalloc double[classes];
        var groups = new List<int>();
        foreach (var (doc, label) in test)
        {
            classifier.Probabilities(classifier.Groups(docs.Words[doc], groups), p);
            int argmax = 0;
            for (int k = 1; k < p.Length; k++) if (p[k] > p[argmax]) argmax = k;
            if (argmax == label) score += p[argmax];
        }
        return score / test.Count;
    }

    // As new Random(seed) shuffles: Fisher–Yates from the end, Next(i + 1).
    static int[] Shuffle(int[] items, SubtractiveRandom rng)
    {
        for (int i = items.Length - 1; i > 0; i--)
        {
            int j = rng.Next(0, i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
        return items;
    }

    /// <summary>
    /// Multinomial logistic regression on binary word-presence features, full-batch gradient descent.
    /// <para>
    /// The gradient of a weight is a sum over the captions that have its word, in caption order; a caption's term
    /// depends only on its text and label (its kind). Words of the train split that occur in exactly the same train
    /// texts get the same sums of the same terms in the same order each epoch, so from equal (zero) start weights they
    /// keep equal weights: one weight per such group and class stands for all of them. Each group's gradient is then
    /// added in registers over the kinds of its captions, in caption order, instead of adding every caption's term
    /// into every word's slot in memory (which made each addition wait for the previous one to be stored).
    /// </para>
    /// </summary>
    sealed class BagOfWordsLogisticRegression
    {
        readonly int[] _group;      // [word id]: the weight group of a word of the train split's vocabulary, else −1
        readonly int _groups;
        readonly double[] _weights; // [class * groups + group]
        readonly double[] _bias;    // [class]

        BagOfWordsLogisticRegression(int[] group, int groups, int classes)
        {
            _group = group;
            _groups = groups;
            _weights = new double[classes * groups];
            _bias = new double[classes];
        }

        // A caption's weight groups: one per word in the vocabulary, in the caption's order.
        public List<int> Groups(int[] words, List<int> into)
        {
            into.Clear();
            foreach (int w in words) if (_group[w] >= 0) into.Add(_group[w]);
            return into;
        }

        // Softmax of the logits into p (length = classes); the max is found as Enumerable.Max does (NaN first skipped).
        public void Probabilities(List<int> groups, Span<double> p)
        {
            var span = CollectionsMarshal.AsSpan(groups);
            Probabilities(span, FeatureValue(span.Length), p);
        }

        // value: FeatureValue(groups.Length), which the training computes once per text.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        void Probabilities(ReadOnlySpan<int> groups, double value, Span<double> p)
        {
            int classes = _bias.Length;
            if (classes == 2)
            {
                // The two classes' sums side by side (the same additions, in the same order, for each).
                var w0 = _weights.AsSpan(0, _groups);
                var w1 = _weights.AsSpan(_groups, _groups);
                double z0 = 0, z1 = 0;
                foreach (int g in groups) { z0 += w0[g]; z1 += w1[g]; }
                p[0] = _bias[0] + value * z0;
                p[1] = _bias[1] + value * z1;
            }
            else
                for (int k = 0; k < classes; k++)
                {
                    double z = 0;
                    var row = _weights.AsSpan(k * _groups, _groups);
                    foreach (int g in groups) z += row[g];
                    p[k] = _bias[k] + value * z;
                }
            int i = 1;
            double max = p[0];
            while (double.IsNaN(max) && i < classes) max = p[i++];
            for (; i < classes; i++) if (p[i] > max) max = p[i];
            double sum = 0;
            for (int k = 0; k < classes; k++)
            {
                // exp(±0) is exactly 1 (IEEE 754, C99 Annex F): the largest logit's exponential needs no call.
                double d = p[k] - max;
                sum += p[k] = d == 0 ? 1.0 : Math.Exp(d);
            }
            for (int k = 0; k < classes; k++) p[k] /= sum;
        }

        // Each present word has value 1/sqrt(#present words), so every caption's feature vector has unit norm. This keeps
        // the loss curvature below 1 whatever the caption length, so a step size of 1 is stable.
        static double FeatureValue(int present) => present == 0 ? 0 : 1 / Math.Sqrt(present);

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static BagOfWordsLogisticRegression Train(Documents docs, List<(int Doc, int Label)> data, int classes, LicOptions options)
        {
            // The train split's distinct texts (first appearance) and (text, label) kinds: a caption's probabilities depend
            // on its text only, its gradient terms on its kind only.
            var textIndex = new Dictionary<int, int>();
            var textDoc = new List<int>();
            var kindIndex = new Dictionary<(int Text, int Label), int>();
            var kinds = new List<(int Text, int Label)>();
            var kindOf = new int[data.Count];
            for (int d = 0; d < data.Count; d++)
            {
                int doc = data[d].Doc;
                if (!textIndex.TryGetValue(docs.Text[doc], out int u)) { textIndex[docs.Text[doc]] = u = textDoc.Count; textDoc.Add(doc); }
                if (!kindIndex.TryGetValue((u, data[d].Label), out int e)) { kindIndex[(u, data[d].Label)] = e = kinds.Count; kinds.Add((u, data[d].Label)); }
                kindOf[d] = e;
            }
            int texts = textDoc.Count;

            // Weight groups: the train vocabulary's words keyed by the texts they occur in.
            var textsOfWord = new Dictionary<int, List<int>>();
            var vocabulary = new List<int>();   // first appearance, as the texts list them
            for (int u = 0; u < texts; u++)
                foreach (int w in docs.Words[textDoc[u]])
                {
                    if (!textsOfWord.TryGetValue(w, out var list)) { textsOfWord[w] = list = []; vocabulary.Add(w); }
                    list.Add(u);
                }
            var group = new int[docs.WordCount];
            Array.Fill(group, -1);
            var groupOfSignature = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (int w in vocabulary)
            {
                string signature = string.Join(',', textsOfWord[w]);
                if (!groupOfSignature.TryGetValue(signature, out int g)) groupOfSignature[signature] = g = groupOfSignature.Count;
                group[w] = g;
            }
            int groups = groupOfSignature.Count;
            var model = new BagOfWordsLogisticRegression(group, groups, classes);
            var textGroups = new int[texts][];
            var textValue = new double[texts];
            var scratch = new List<int>();
            for (int u = 0; u < texts; u++)
            {
                textGroups[u] = [.. model.Groups(docs.Words[textDoc[u]], scratch)];
                textValue[u] = FeatureValue(textGroups[u].Length);
            }
            // The gradient's sums, one per job: job 0 the biases (every caption's errors), job 1 + g the weights of group g
            // (the steps of the captions whose text has it). Each is a list of offsets into the term table, in caption order.
            var distinctGroups = textGroups.Select(gs => gs.Distinct().ToArray()).ToArray();
            int width = 2 * classes;   // a kind's row of the term table: its step per class, then its error per class
            var jobs = new List<int>[1 + groups];
            for (int j = 0; j < jobs.Length; j++) jobs[j] = [];
            for (int d = 0; d < data.Count; d++)
            {
                int e = kindOf[d];
                jobs[0].Add(e * width + classes);
                foreach (int g in distinctGroups[kinds[e].Text]) jobs[1 + g].Add(e * width);
            }
            var sums = new InOrderSums(jobs.Select(j => j.ToArray()).ToArray(), classes, zeroRow: kinds.Count * width);

            var probabilities = new double[texts * classes];
            var terms = new double[(kinds.Count + 1) * width];   // the last row stays +0: what InOrderSums pads with
            var gradient = new double[jobs.Length * classes];
            double rate = options.LearningRate / data.Count, decay = options.LearningRate * options.L2;
            for (int epoch = 0; epoch < options.Epochs; epoch++)
            {
                for (int u = 0; u < texts; u++) model.Probabilities(textGroups[u], textValue[u], probabilities.AsSpan(u * classes, classes));
                for (int e = 0; e < kinds.Count; e++)
                {
                    var (u, label) = kinds[e];
                    for (int k = 0; k < classes; k++)
                    {
                        double error = probabilities[u * classes + k] - (k == label ? 1 : 0);
                        terms[e * width + k] = error * textValue[u];
                        terms[e * width + classes + k] = error;
                    }
                }
                sums.Compute(terms, gradient);
                for (int k = 0; k < classes; k++)
                {
                    model._bias[k] -= rate * gradient[k];
                    for (int g = 0; g < groups; g++)
                        model._weights[k * groups + g] -= rate * gradient[(1 + g) * classes + k] + decay * model._weights[k * groups + g];
                }
            }
            return model;
        }
    }

    /// <summary>
    /// Sums of rows of a term table in given orders: for job j and class k, 0 + terms[o₀ + k] + terms[o₁ + k] + … over
    /// the job's offsets o in order, as a loop adding one term after another gives. Each sum is a chain of dependent
    /// additions; with two classes, four jobs run side by side (eight chains in flight instead of two), the shorter
    /// ones padded with a row of +0 (adding +0 to a sum that starts at +0 changes nothing).
    /// </summary>
    sealed class InOrderSums
    {
        readonly int _classes, _jobs;
        readonly int[][] _offsets;   // classes ≠ 2: each job's offsets
        readonly int[] _quadJobs;    // classes = 2: the jobs, longest first, four per quad (−1: none)
        readonly int[] _quadStart;   // quad q's interleaved offsets at 4·_quadStart[q]..4·_quadStart[q + 1]
        readonly int[] _interleaved; // [4·step + lane]
        readonly int _tableLength;   // the term table's least length: past every offset's two terms

        public InOrderSums(int[][] offsets, int classes, int zeroRow)
        {
            _classes = classes;
            _jobs = offsets.Length;
            if (offsets.SelectMany(o => o).Append(zeroRow).Any(o => o < 0)) throw new ArgumentOutOfRangeException(nameof(offsets), "offsets are not negative");
            _tableLength = offsets.SelectMany(o => o).Append(zeroRow).Max() + classes;
            _offsets = offsets;
            _quadJobs = [];
            _quadStart = [0];
            _interleaved = [];
            if (classes != 2) return;
            var order = Enumerable.Range(0, offsets.Length).OrderByDescending(j => offsets[j].Length).ToArray();
            int quads = (order.Length + 3) / 4;
            _quadJobs = new int[4 * quads];
            _quadStart = new int[quads + 1];
            for (int q = 0; q < quads; q++)
            {
                for (int lane = 0; lane < 4; lane++) _quadJobs[4 * q + lane] = 4 * q + lane < order.Length ? order[4 * q + lane] : -1;
                _quadStart[q + 1] = _quadStart[q] + offsets[order[4 * q]].Length;   // the quad's longest job
            }
            _interleaved = new int[4 * _quadStart[quads]];
            for (int q = 0; q < quads; q++)
                for (int lane = 0; lane < 4; lane++)
                {
                    int job = _quadJobs[4 * q + lane];
                    for (int i = 0, steps = _quadStart[q + 1] - _quadStart[q]; i < steps; i++)
                        _interleaved[4 * (_quadStart[q] + i) + lane] = job >= 0 && i < offsets[job].Length ? offsets[job][i] : zeroRow;
                }
        }

        /// <summary>sums[j · classes + k] for every job j and class k.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Compute(double[] terms, double[] sums)
        {
            if (_classes != 2)
            {
                for (int j = 0; j < _jobs; j++)
                    for (int k = 0; k < _classes; k++)
                    {
                        double s = 0;
                        foreach (int o in _offsets[j]) s += terms[o + k];
                        sums[j * _classes + k] = s;
                    }
                return;
            }
            // The two classes' terms of a row as one vector: the same two additions, lane by lane.
            ref int at = ref MemoryMarshal.GetArrayDataReference(_interleaved);
            ref double t = ref MemoryMarshal.GetArrayDataReference(terms);
            if (terms.Length < _tableLength) throw new ArgumentException("the term table is too short for its offsets");
            for (int q = 0; q + 1 < _quadStart.Length; q++)
            {
                Vector128<double> a = default, b = default, c = default, d = default;
                for (int i = 4 * _quadStart[q], end = 4 * _quadStart[q + 1]; i < end; i += 4)
                {
                    a += Vector128.LoadUnsafe(ref t, (nuint)Unsafe.Add(ref at, i));
                    b += Vector128.LoadUnsafe(ref t, (nuint)Unsafe.Add(ref at, i + 1));
                    c += Vector128.LoadUnsafe(ref t, (nuint)Unsafe.Add(ref at, i + 2));
                    d += Vector128.LoadUnsafe(ref t, (nuint)Unsafe.Add(ref at, i + 3));
                }
                Store(sums, _quadJobs[4 * q], a);
                Store(sums, _quadJobs[4 * q + 1], b);
                Store(sums, _quadJobs[4 * q + 2], c);
                Store(sums, _quadJobs[4 * q + 3], d);
            }
        }

        static void Store(double[] sums, int job, Vector128<double> s)
        {
            if (job < 0) return;
            sums[2 * job] = s[0];
            sums[2 * job + 1] = s[1];
        }
    }
}
