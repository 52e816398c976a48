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
public sealed record LicResult(double Lic, double LicModel, double LicHuman, double[] PerSeed);

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
        options ??= new LicOptions();
        if (options.Seeds < 1) throw new ArgumentOutOfRangeException(nameof(options), options.Seeds, "LIC needs at least one seed");
        var genderWords = masculineWords.Concat(feminineWords).ToHashSet(StringComparer.Ordinal);
        var model = modelCaptions.Select(c => new LicCaption(Mask(c.Caption, genderWords), c.Gender)).ToArray();
        var human = humanCaptions.Select(c => new LicCaption(Mask(c.Caption, genderWords), c.Gender)).ToArray();

        var perSeed = new double[options.Seeds];
        double sumModel = 0, sumHuman = 0;
        for (int s = 0; s < options.Seeds; s++)
        {
            double m = LeakageScore(model, options, options.Seed + s);
            double h = LeakageScore(human, options, options.Seed + s);
            perSeed[s] = m - h;
            sumModel += m;
            sumHuman += h;
        }
        return new LicResult(perSeed.Average(), sumModel / options.Seeds, sumHuman / options.Seeds, perSeed);
    }

    /// <summary>
    /// Leakage of already-masked captions for one seed: train on a balanced split, return the mean over the test split
    /// of 1[correct]·(max class probability).
    /// </summary>
    public static double LeakageScore(IReadOnlyList<LicCaption> maskedCaptions, LicOptions options, int seed)
    {
        var classes = maskedCaptions.Select(c => c.Gender).Distinct().Order(StringComparer.Ordinal).ToArray();
        if (classes.Length < 2) throw new ArgumentException("LIC needs captions of at least two genders");
        var rng = new Random(seed);
        var byClass = classes.Select(g => Shuffle(
            Enumerable.Range(0, maskedCaptions.Count).Where(i => maskedCaptions[i].Gender == g).ToArray(), rng)).ToArray();
        int perClass = byClass.Min(c => c.Length);
        int trainPerClass = (int)Math.Round(options.TrainFraction * perClass);
        if (trainPerClass < 1 || trainPerClass >= perClass)
            throw new ArgumentException($"LIC needs at least one train and one test caption per gender (smallest gender has {perClass})");

        var train = new List<(string Text, int Label)>();
        var test = new List<(string Text, int Label)>();
        for (int k = 0; k < classes.Length; k++)
            for (int j = 0; j < perClass; j++)
                (j < trainPerClass ? train : test).Add((maskedCaptions[byClass[k][j]].Caption, k));

        var classifier = BagOfWordsLogisticRegression.Train(train, classes.Length, options);
        double score = 0;
        foreach (var (text, label) in test)
        {
            var p = classifier.Probabilities(text);
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
        readonly Dictionary<string, int> _vocabulary;
        readonly double[,] _weights; // [class, feature]
        readonly double[] _bias;     // [class]

        BagOfWordsLogisticRegression(Dictionary<string, int> vocabulary, int classes)
        {
            _vocabulary = vocabulary;
            _weights = new double[classes, vocabulary.Count];
            _bias = new double[classes];
        }

        int[] Features(string text) =>
            text.Split(' ', StringSplitOptions.RemoveEmptyEntries)
                .Select(w => _vocabulary.TryGetValue(w, out var f) ? f : -1).Where(f => f >= 0).Distinct().ToArray();

        double[] Probabilities(int[] features)
        {
            int classes = _bias.Length;
            var logits = new double[classes];
            double value = FeatureValue(features);
            for (int k = 0; k < classes; k++)
            {
                double z = 0;
                foreach (var f in features) z += _weights[k, f];
                logits[k] = _bias[k] + value * z;
            }
            double max = logits.Max(), sum = 0;
            for (int k = 0; k < classes; k++) sum += logits[k] = Math.Exp(logits[k] - max);
            for (int k = 0; k < classes; k++) logits[k] /= sum;
            return logits;
        }

        public double[] Probabilities(string text) => Probabilities(Features(text));

        // Each present word has value 1/sqrt(#present words), so every caption's feature vector has unit norm. This keeps
        // the loss curvature below 1 whatever the caption length, so a step size of 1 is stable.
        static double FeatureValue(int[] features) => features.Length == 0 ? 0 : 1 / Math.Sqrt(features.Length);

        public static BagOfWordsLogisticRegression Train(List<(string Text, int Label)> data, int classes, LicOptions options)
        {
            var vocabulary = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var (text, _) in data)
                foreach (var w in text.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                    vocabulary.TryAdd(w, vocabulary.Count);
            var model = new BagOfWordsLogisticRegression(vocabulary, classes);
            var docs = data.Select(d => (Features: model.Features(d.Text), d.Label)).ToArray();

            var gradW = new double[classes, vocabulary.Count];
            var gradB = new double[classes];
            for (int epoch = 0; epoch < options.Epochs; epoch++)
            {
                Array.Clear(gradW);
                Array.Clear(gradB);
                foreach (var (features, label) in docs)
                {
                    var p = model.Probabilities(features);
                    double value = FeatureValue(features);
                    for (int k = 0; k < classes; k++)
                    {
                        double error = p[k] - (k == label ? 1 : 0);
                        gradB[k] += error;
                        foreach (var f in features) gradW[k, f] += error * value;
                    }
                }
                double step = options.LearningRate / docs.Length;
                for (int k = 0; k < classes; k++)
                {
                    model._bias[k] -= step * gradB[k];
                    for (int f = 0; f < vocabulary.Count; f++)
                        model._weights[k, f] -= step * gradW[k, f] + options.LearningRate * options.L2 * model._weights[k, f];
                }
            }
            return model;
        }
    }
}
