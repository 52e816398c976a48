// A small RFC 4180 CSV reader for the importers: quoted fields, doubled quotes, CRLF or LF, and the line number of
// every record so an importer's errors can point at the row.
using System.Text;

namespace VlaBias.Data.Importers;

public sealed record CsvRecord(int Line, IReadOnlyList<string> Fields);

public static class Csv
{
    /// <summary>Reads every record of PATH (the header included, as the first record).</summary>
    public static List<CsvRecord> Read(string path)
    {
        if (!File.Exists(path)) throw new BadInputException($"{path}: file not found");
        var text = File.ReadAllText(path);
        var records = new List<CsvRecord>();
        var fields = new List<string>();
        var field = new StringBuilder();
        int line = 1, recordLine = 1;
        bool quoted = false, any = false;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i++; }
                else if (c == '"') quoted = false;
                else { if (c == '\n') line++; field.Append(c); }
                continue;
            }
            switch (c)
            {
                case '"' when field.Length == 0: quoted = true; any = true; break;
                case ',': fields.Add(field.ToString()); field.Clear(); any = true; break;
                case '\r': break;
                case '\n':
                    if (any || field.Length > 0) { fields.Add(field.ToString()); records.Add(new CsvRecord(recordLine, fields.ToList())); }
                    fields.Clear(); field.Clear(); any = false;
                    line++; recordLine = line;
                    break;
                default: field.Append(c); any = true; break;
            }
        }
        if (quoted) throw new BadInputException($"{path}: line {recordLine}: unterminated quoted field");
        if (any || field.Length > 0) { fields.Add(field.ToString()); records.Add(new CsvRecord(recordLine, fields.ToList())); }
        return records;
    }

    /// <summary>Header → column index; the required columns must be present (case-insensitive).</summary>
    public static Dictionary<string, int> Header(string path, List<CsvRecord> records, params string[] required)
    {
        if (records.Count == 0) throw new BadInputException($"{path}: empty file (expected a header line with {string.Join(", ", required)})");
        var cols = new Dictionary<string, int>(StringComparer.OrdinalIgnoreCase);
        for (int i = 0; i < records[0].Fields.Count; i++) cols.TryAdd(records[0].Fields[i].Trim().TrimStart('\uFEFF'), i);
        var missing = required.Where(r => !cols.ContainsKey(r)).ToList();
        if (missing.Count > 0)
            throw new BadInputException($"{path}: line 1: missing column{(missing.Count > 1 ? "s" : "")} {string.Join(", ", missing)} (header: {string.Join(",", records[0].Fields)})");
        return cols;
    }
}
