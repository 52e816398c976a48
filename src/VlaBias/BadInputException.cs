namespace VlaBias;

/// <summary>
/// A file, field or value given by the user is wrong. The CLI prints the message as one line and exits with code 2
/// The message names the thing (file path, field, tensor, line) and says what was expected.
/// </summary>
public sealed class BadInputException : Exception
{
    public BadInputException(string message) : base(message) { }
    public BadInputException(string message, Exception inner) : base(message, inner) { }
}
