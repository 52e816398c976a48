namespace VlaBias.Evaluation.Metrics;

/// <summary>
/// Directional bias amplification BiasAmp→ of Wang &amp; Russakovsky 2021, "Directional Bias Amplification" (ICML;
/// princetonvisualai/directional-bias-amp, directional_biasamp.py <c>biasamp_attribute_to_task</c>), attribute→task
/// direction with roles as tasks. metrics.json key <c>biasamp.attribute_to_role</c>.
/// <para>
/// For every attribute a (e.g. gender) and task t (e.g. role):
/// y_at = sign(P(a, t) − P(a)·P(t)), from ground-truth labels (of a training set if given, else of the evaluated set),
/// using only items that carry at least one attribute or task label;
/// Δ_at = P(t̂ = 1 | a = 1) − P(t = 1 | a = 1) on the evaluated set (predicted minus true rate of the task among items
/// with the attribute);
/// BiasAmp→ = mean over (a, t) of y_at·Δ_at, skipping undefined cells (no item with attribute a) like numpy's nanmean.
/// Positive values mean the predictions exaggerate the correlations of the labels; 0 means no amplification.
/// </para>
/// </summary>
public static class BiasAmp
{
    /// <summary>
    /// BiasAmp A→T on one-hot (or multi-label) matrices of shape [items, attributes] / [items, tasks], as
    /// <c>biasamp_attribute_to_task(task_labels, attribute_labels, task_preds, task_labels_train, attribute_labels_train)</c>.
    /// NaN when every cell is undefined.
    /// </summary>
    public static double AttributeToTask(bool[,] attributeLabels, bool[,] taskLabels, bool[,] taskPreds,
                                         bool[,]? attributeLabelsTrain = null, bool[,]? taskLabelsTrain = null)
    {
        int n = attributeLabels.GetLength(0), numA = attributeLabels.GetLength(1), numT = taskLabels.GetLength(1);
        if (taskLabels.GetLength(0) != n || taskPreds.GetLength(0) != n || taskPreds.GetLength(1) != numT)
            throw new ArgumentException("attribute labels, task labels and task predictions must have matching shapes");
        if (attributeLabelsTrain is null || taskLabelsTrain is null)
            (attributeLabelsTrain, taskLabelsTrain) = (attributeLabels, taskLabels);
        if (attributeLabelsTrain.GetLength(1) != numA || taskLabelsTrain.GetLength(1) != numT
            || attributeLabelsTrain.GetLength(0) != taskLabelsTrain.GetLength(0))
            throw new ArgumentException("training labels must have the same attributes and tasks as the evaluated labels");

        // y_at on the training labels, over items with at least one label.
        int m = attributeLabelsTrain.GetLength(0);
        var kept = Enumerable.Range(0, m)
            .Where(i => Enumerable.Range(0, numA).Any(a => attributeLabelsTrain[i, a])
                     || Enumerable.Range(0, numT).Any(t => taskLabelsTrain[i, t]))
            .ToArray();
        double total = kept.Length;

        double sum = 0;
        int defined = 0;
        for (int a = 0; a < numA; a++)
        {
            var withA = Enumerable.Range(0, n).Where(i => attributeLabels[i, a]).ToArray();
            for (int t = 0; t < numT; t++)
            {
                double pA = kept.Count(i => attributeLabelsTrain[i, a]) / total;
                double pT = kept.Count(i => taskLabelsTrain[i, t]) / total;
                double pAT = kept.Count(i => attributeLabelsTrain[i, a] && taskLabelsTrain[i, t]) / total;
                double correlation = pAT - pA * pT;
                if (double.IsNaN(correlation) || withA.Length == 0) continue; // undefined cell (nanmean skips it)
                double y = Math.Sign(correlation);
                double delta = withA.Count(i => taskPreds[i, t]) / (double)withA.Length
                             - withA.Count(i => taskLabels[i, t]) / (double)withA.Length;
                sum += y * delta;
                defined++;
            }
        }
        return defined == 0 ? double.NaN : sum / defined;
    }

    /// <summary>
    /// BiasAmp A→T for one categorical attribute (e.g. presented gender) and one role per item: attributes and true
    /// roles are one-hot encoded (columns = their distinct values), a predicted role sets the column of that role (a
    /// prediction that is no true role of any item, or null, sets none). y_at comes from the evaluated labels.
    /// </summary>
    public static double AttributeToRole(IReadOnlyList<string> attributes, IReadOnlyList<string> trueRoles,
                                         IReadOnlyList<string?> predictedRoles)
    {
        ArgumentNullException.ThrowIfNull(attributes);
        ArgumentNullException.ThrowIfNull(trueRoles);
        ArgumentNullException.ThrowIfNull(predictedRoles);
        int n = attributes.Count;
        if (trueRoles.Count != n || predictedRoles.Count != n)
            throw new ArgumentException($"{n} attributes, {trueRoles.Count} true roles, {predictedRoles.Count} predictions: need one each per item");
        var attributeValues = attributes.Distinct().Order(StringComparer.Ordinal).ToList();
        var roleValues = trueRoles.Distinct().Order(StringComparer.Ordinal).ToList();
        var a = new bool[n, attributeValues.Count];
        var t = new bool[n, roleValues.Count];
        var tHat = new bool[n, roleValues.Count];
        for (int i = 0; i < n; i++)
        {
            a[i, attributeValues.IndexOf(attributes[i])] = true;
            t[i, roleValues.IndexOf(trueRoles[i])] = true;
            int p = predictedRoles[i] is null ? -1 : roleValues.IndexOf(predictedRoles[i]!);
            if (p >= 0) tHat[i, p] = true;
        }
        return AttributeToTask(a, t, tHat);
    }
}
