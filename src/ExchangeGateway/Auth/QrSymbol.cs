using System.Text;
using QRCoder;

namespace ExchangeGateway.Auth;

/// <summary>
/// A QR code as the side of its square (quiet zone included) and one SVG path of its dark modules, for the enrolment page:
/// authenticator apps add a key from the camera, and typing 32 letters is the fallback the page also offers. Drawn
/// inline rather than served as an image, so the key stays in the one response that shows it (no image URL to log or cache).
/// </summary>
public sealed record QrSymbol(int Size, string Path)
{
    public static QrSymbol Of(string text)
    {
        using var data = QRCodeGenerator.GenerateQrCode(text, QRCodeGenerator.ECCLevel.M);
        var rows = data.ModuleMatrix;
        var path = new StringBuilder();
        for (var y = 0; y < rows.Count; y++)
        {
            var row = rows[y];
            for (var x = 0; x < row.Length; x++)
            {
                if (!row[x])
                {
                    continue;
                }

                // One rectangle per run of dark modules keeps the path a few kilobytes.
                var run = 1;
                while (x + run < row.Length && row[x + run])
                {
                    run++;
                }

                path.Append('M').Append(x).Append(',').Append(y).Append('h').Append(run).Append("v1h-").Append(run).Append('z');
                x += run;
            }
        }

        return new QrSymbol(rows.Count, path.ToString());
    }
}
