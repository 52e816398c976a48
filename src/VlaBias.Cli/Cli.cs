// Shared CLI plumbing: the options every command takes (--seed, --threads, --device, --verbose), Serilog setup
// (console at info on stderr; a JSON-lines file at debug where a command has a run folder), progress on stderr,
// and the mapping of failures to exit codes (1 a missed goal, 2 bad input, 3 internal error).
using System.CommandLine;
using Serilog;
using Serilog.Events;
using Serilog.Formatting.Compact;
using Spectre.Console;
using TorchSharp;

namespace VlaBias.Cli;

public static class ExitCodes
{
    public const int Ok = 0, MissedGoal = 1, BadInput = 2, Internal = 3;
}

public sealed class CommonOptions
{
    public readonly Option<long> Seed = new("--seed") { Description = "Random seed (every random choice derives from it)", DefaultValueFactory = _ => 0 };
    public readonly Option<int> Threads = new("--threads") { Description = "CPU threads for tensor math (0 = all cores)", DefaultValueFactory = _ => 0 };
    public readonly Option<string> Device = new("--device") { Description = "cpu or cuda", DefaultValueFactory = _ => "cpu" };
    public readonly Option<bool> Verbose = new("--verbose") { Description = "Debug logging and stack traces on errors" };

    public void AddTo(Command c)
    {
        c.Options.Add(Seed); c.Options.Add(Threads); c.Options.Add(Device); c.Options.Add(Verbose);
    }
}

public static class Cli
{
    public static readonly CommonOptions Common = new();

    /// <summary>An ANSI console on stderr, so stdout stays clean for --json output.</summary>
    public static readonly IAnsiConsole Err = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

    public static void ConfigureLogging(bool verbose, string? jsonLogFile = null)
    {
        var cfg = new LoggerConfiguration().MinimumLevel.Debug()
            .WriteTo.Console(restrictedToMinimumLevel: verbose ? LogEventLevel.Debug : LogEventLevel.Information,
                outputTemplate: "[{Timestamp:HH:mm:ss} {Level:u3}] {Message:lj}{NewLine}", standardErrorFromLevel: LogEventLevel.Verbose);
        if (jsonLogFile is not null) cfg = cfg.WriteTo.File(new CompactJsonFormatter(), jsonLogFile, restrictedToMinimumLevel: LogEventLevel.Debug);
        Log.Logger = cfg.CreateLogger();
    }

    /// <summary>
    /// Parses and runs the command line. A parse error (missing required option, unknown option or argument, a value
    /// of the wrong type) is bad input: one line on stderr and exit 2, not System.CommandLine's default of help text
    /// and exit 1, so scripts can tell bad input from a missed goal.
    /// </summary>
    public static int Invoke(RootCommand root, string[] args)
    {
        var parsed = root.Parse(args);
        if (parsed.Errors.Count == 0) return parsed.Invoke();
        var names = new List<string>();
        for (var r = parsed.CommandResult; r is not null; r = r.Parent as System.CommandLine.Parsing.CommandResult)
            names.Insert(0, r.Command is RootCommand ? "vlatune" : r.Command.Name);
        string command = string.Join(' ', names);
        Console.Error.WriteLine($"vlatune: error: {OneLine(string.Join("; ", parsed.Errors.Select(e => e.Message)))} (see `{command} --help`)");
        return ExitCodes.BadInput;
    }

    /// <summary>Runs a command body with the common setup and the exit-code mapping (BadInputException → 2, anything else → 3).</summary>
    public static int Run(ParseResult p, Func<int> body)
    {
        bool verbose = p.GetValue(Common.Verbose);
        if (Log.Logger == Serilog.Core.Logger.None || Log.Logger.GetType().Name == "SilentLogger") ConfigureLogging(verbose);
        try
        {
            int threads = p.GetValue(Common.Threads);
            // Before the first tensor call: libgomp reads its wait policy when libtorch loads.
            Log.Debug("threads: {Choice}", VlaBias.Model.ThreadWaitPolicy.Apply(threads));
            if (threads > 0) torch.set_num_threads(threads);
            string device = p.GetValue(Common.Device) ?? "cpu";
            if (device != "cpu" && device != "cuda") throw new BadInputException($"--device: unknown value '{device}' (expected cpu or cuda)");
            if (device == "cuda" && !torch.cuda.is_available())
                throw new BadInputException("--device cuda: no CUDA device available (this build uses the TorchSharp-cpu backend)");
            torch.manual_seed(p.GetValue(Common.Seed));
            return body();
        }
        catch (BadInputException e)
        {
            Console.Error.WriteLine($"vlatune: error: {OneLine(e.Message)}");
            if (verbose) Console.Error.WriteLine(e);
            return ExitCodes.BadInput;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"vlatune: internal error: {OneLine(e.Message)}");
            if (verbose) Console.Error.WriteLine(e); else Console.Error.WriteLine("(run with --verbose for the stack trace)");
            return ExitCodes.Internal;
        }
        finally { Log.CloseAndFlush(); }
    }

    private static string OneLine(string s) => s.Replace("\r", " ").Replace("\n", " ");
}
