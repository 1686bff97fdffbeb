namespace ExchangeGateway.Pages;

/// <summary>
/// The key of the pages' texts: Resources/Pages/PageText.resx is French (the default culture), PageText.en.resx English.
/// </summary>
public sealed class PageText
{
}
