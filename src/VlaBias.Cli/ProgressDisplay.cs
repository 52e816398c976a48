using Serilog;
using Spectre.Console;

namespace VlaBias.Cli;

/// <summary>
/// Progress for long work: a Spectre progress bar (elapsed, ETA, a status line with loss/bias) on an interactive
/// terminal; otherwise a log line every ~5% so CI logs and pipes stay readable.
/// </summary>
public sealed class ProgressDisplay
{
    public sealed record Update(double Done, double Total, string Status);

    public static T Run<T>(string title, Func<IProgress<Update>, T> body)
    {
        if (!Cli.Err.Profile.Capabilities.Interactive || Console.IsErrorRedirected)
        {
            double lastLogged = -1;
            var started = DateTime.UtcNow;
            var reporter = new Progress<Update>(_ => { });
            var sync = new SyncProgress(u =>
            {
                double frac = u.Total > 0 ? u.Done / u.Total : 0;
                if (frac - lastLogged >= 0.05 || u.Done >= u.Total)
                {
                    lastLogged = frac;
                    var elapsed = DateTime.UtcNow - started;
                    var eta = frac > 0 ? TimeSpan.FromSeconds(elapsed.TotalSeconds * (1 - frac) / frac) : TimeSpan.Zero;
                    Log.Information("{Title}: {Done}/{Total} ({Pct:P0}) elapsed {Elapsed:mm\\:ss} eta {Eta:mm\\:ss} {Status}", title, u.Done, u.Total, frac, elapsed, eta, u.Status);
                }
            });
            return body(sync);
        }
        T result = default!;
        Cli.Err.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title));
                var sync = new SyncProgress(u =>
                {
                    task.MaxValue = Math.Max(1, u.Total);
                    task.Value = u.Done;
                    task.Description = Markup.Escape($"{title} {u.Status}");
                });
                result = body(sync);
                task.Value = task.MaxValue;
            });
        return result;
    }

    /// <summary>IProgress that reports synchronously on the caller's thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SyncProgress(Action<Update> report) : IProgress<Update>
    {
        public void Report(Update value) => report(value);
    }
}
