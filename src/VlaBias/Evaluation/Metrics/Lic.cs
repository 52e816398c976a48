using System.Runtime.CompilerServices;

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
    // order the classifier adds them) and the id of its text (equal texts have equal features, hence equal probabilities).
    sealed class Documents
    {
        public readonly int[][] Words;
        public readonly int[] Text;
        public readonly string[] Genders;
        public readonly int WordCount;

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
            WordCount = words.Count;
        }
    }

    // Why the balanced split of LeakageScore cannot be made on this sample, else null. Class sizes do not depend on the
    // seed (it only shuffles within a class), so one check serves every seed.
    static string? NotComputable(Documents docs, IReadOnlyList<int> sample, LicOptions options)
    {
        var perGender = sample.CountBy(i => docs.Genders[i]).Select(g => g.Value).ToArray();
        if (perGender.Length < 2) return $"LIC needs captions of at least two genders ({perGender.Length} here)";
        int perClass = perGender.Min(), trainPerClass = (int)Math.Round(options.TrainFraction * perClass);
        return trainPerClass < 1 || trainPerClass >= perClass
            ? $"LIC needs at least one train and one test caption per gender (smallest gender has {perClass}, train fraction {options.TrainFraction.ToString(System.Globalization.CultureInfo.InvariantCulture)})"
            : null;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static double LeakageScore(Documents docs, IReadOnlyList<int> sample, LicOptions options, int seed)
    {
        var classes = sample.Select(i => docs.Genders[i]).Distinct().Order(StringComparer.Ordinal).ToArray();
        if (classes.Length < 2) throw new ArgumentException("LIC needs captions of at least two genders");
        var rng = new Random(seed);
        var byClass = classes.Select(g => Shuffle(
            Enumerable.Range(0, sample.Count).Where(i => docs.Genders[sample[i]] == g).ToArray(), rng)).ToArray();
        int perClass = byClass.Min(c => c.Length);
        int trainPerClass = (int)Math.Round(options.TrainFraction * perClass);
        if (trainPerClass < 1 || trainPerClass >= perClass)
            throw new ArgumentException($"LIC needs at least one train and one test caption per gender (smallest gender has {perClass})");

        var train = new List<(int Doc, int Label)>();
        var test = new List<(int Doc, int Label)>();
        for (int k = 0; k < classes.Length; k++)
            for (int j = 0; j < perClass; j++)
                (j < trainPerClass ? train : test).Add((sample[byClass[k][j]], k));

        var classifier = BagOfWordsLogisticRegression.Train(docs, train, classes.Length, options);
        double score = 0;
        Span<double> p = stackalloc double[classes.Length];
        foreach (var (doc, label) in test)
        {
            classifier.Probabilities(classifier.Features(docs.Words[doc]), p);
            int argmax = 0;
            for (int k = 1; k < p.Length; k++) if (p[k] > p[argmax]) argmax = k;
            if (argmax == label) score += p[argmax];
        }
        return score / test.Count;
    }

    static int[] Shuffle(int[] items, Random rng)
    {
        for (int i = items.Length - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
        return items;
    }

    /// <summary>Multinomial logistic regression on binary word-presence features, full-batch gradient descent.</summary>
    sealed class BagOfWordsLogisticRegression
    {
        readonly int[] _feature;    // [word id]: the feature of a word of the train split's vocabulary, else −1
        readonly int _width;        // vocabulary size
        readonly double[] _weights; // [class * vocabulary + feature]
        readonly double[] _bias;    // [class]

        BagOfWordsLogisticRegression(int[] feature, int width, int classes)
        {
            _feature = feature;
            _width = width;
            _weights = new double[classes * width];
            _bias = new double[classes];
        }

        // A caption's features: its words that are in the vocabulary, in the caption's order.
        public int[] Features(int[] words)
        {
            int n = 0;
            foreach (int w in words) if (_feature[w] >= 0) n++;
            var f = new int[n];
            n = 0;
            foreach (int w in words) if (_feature[w] >= 0) f[n++] = _feature[w];
            return f;
        }

        // Softmax of the logits into p (length = classes); the max is found as Enumerable.Max does (NaN first skipped).
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Probabilities(int[] features, Span<double> p)
        {
            int classes = _bias.Length;
            double value = FeatureValue(features);
            for (int k = 0; k < classes; k++)
            {
                double z = 0;
                var row = _weights.AsSpan(k * _width, _width);
                foreach (var f in features) z += row[f];
                p[k] = _bias[k] + value * z;
            }
            int i = 1;
            double max = p[0];
            while (double.IsNaN(max) && i < classes) max = p[i++];
            for (; i < classes; i++) if (p[i] > max) max = p[i];
            double sum = 0;
            for (int k = 0; k < classes; k++) sum += p[k] = Math.Exp(p[k] - max);
            for (int k = 0; k < classes; k++) p[k] /= sum;
        }

        // Each present word has value 1/sqrt(#present words), so every caption's feature vector has unit norm. This keeps
        // the loss curvature below 1 whatever the caption length, so a step size of 1 is stable.
        static double FeatureValue(int[] features) => features.Length == 0 ? 0 : 1 / Math.Sqrt(features.Length);

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static BagOfWordsLogisticRegression Train(Documents docs, List<(int Doc, int Label)> data, int classes, LicOptions options)
        {
            // The vocabulary of the train split, numbered in order of first appearance.
            var feature = new int[docs.WordCount];
            Array.Fill(feature, -1);
            int width = 0;
            foreach (var (doc, _) in data)
                foreach (int w in docs.Words[doc])
                    if (feature[w] < 0) feature[w] = width++;
            var model = new BagOfWordsLogisticRegression(feature, width, classes);
            var features = data.Select(d => model.Features(docs.Words[d.Doc])).ToArray();
            var labels = data.Select(d => d.Label).ToArray();
            var values = features.Select(FeatureValue).ToArray();
            // Captions repeat (a bootstrap resample draws an image several times, and templated captions coincide):
            // the probabilities of equal captions are equal, so each distinct text is evaluated once per epoch.
            // The gradient still adds every caption's term in caption order, as the one-by-one loop did.
            var distinctOfText = new Dictionary<int, int>();
            var distinctOf = data.Select(d => distinctOfText.TryGetValue(docs.Text[d.Doc], out int u) ? u : distinctOfText[docs.Text[d.Doc]] = distinctOfText.Count).ToArray();
            var distinctFeatures = new int[distinctOfText.Count][];
            for (int d = 0; d < features.Length; d++) distinctFeatures[distinctOf[d]] = features[d];
            var probabilities = new double[distinctFeatures.Length * classes];

            var gradW = new double[classes * width];
            var gradB = new double[classes];
            double rate = options.LearningRate / features.Length, decay = options.LearningRate * options.L2;
            for (int epoch = 0; epoch < options.Epochs; epoch++)
            {
                Array.Clear(gradW);
                Array.Clear(gradB);
                for (int u = 0; u < distinctFeatures.Length; u++) model.Probabilities(distinctFeatures[u], probabilities.AsSpan(u * classes, classes));
                for (int d = 0; d < features.Length; d++)
                {
                    int offset = distinctOf[d] * classes, label = labels[d];
                    double value = values[d];
                    var present = features[d];
                    for (int k = 0; k < classes; k++)
                    {
                        double error = probabilities[offset + k] - (k == label ? 1 : 0);
                        gradB[k] += error;
                        double step = error * value;
                        var row = gradW.AsSpan(k * width, width);
                        foreach (var f in present) row[f] += step;
                    }
                }
                for (int k = 0; k < classes; k++)
                {
                    model._bias[k] -= rate * gradB[k];
                    for (int f = k * width, end = f + width; f < end; f++)
                        model._weights[f] -= rate * gradW[f] + decay * model._weights[f];
                }
            }
            return model;
        }
    }
}
