using Microsoft.AspNetCore.Mvc.Rendering;
using Microsoft.AspNetCore.Mvc.ViewFeatures;
using Microsoft.AspNetCore.Razor.TagHelpers;

namespace ExchangeGateway.Pages;

/// <summary>
/// Ties a field's error to the field for assistive technology (WCAG 3.3.1): the message gets a stable id, and an invalid
/// field says so (aria-invalid) and points at its message (aria-describedby, kept alongside any hint already named there).
/// </summary>
[HtmlTargetElement("input", Attributes = ForAttribute)]
[HtmlTargetElement("textarea", Attributes = ForAttribute)]
[HtmlTargetElement("select", Attributes = ForAttribute)]
[HtmlTargetElement("span", Attributes = ValidationForAttribute)]
public sealed class AccessibleValidationTagHelper(IHtmlGenerator generator) : TagHelper
{
    private const string ForAttribute = "asp-for";
    private const string ValidationForAttribute = "asp-validation-for";

    // After the framework's own tag helpers, which write id and name.
    public override int Order => 100;

    [HtmlAttributeName(ForAttribute)]
    public ModelExpression? For { get; set; }

    [HtmlAttributeName(ValidationForAttribute)]
    public ModelExpression? ValidationFor { get; set; }

    [ViewContext]
    [HtmlAttributeNotBound]
    public ViewContext ViewContext { get; set; } = null!;

    public static string ErrorId(string fieldId) => fieldId + "-error";

    public override void Process(TagHelperContext context, TagHelperOutput output)
    {
        var expression = For ?? ValidationFor;
        if (expression is null)
        {
            return;
        }

        var name = ViewContext.ViewData.TemplateInfo.GetFullHtmlFieldName(expression.Name);
        var fieldId = TagBuilder.CreateSanitizedId(name, generator.IdAttributeDotReplacement);
        if (output.TagName == "span")
        {
            output.Attributes.SetAttribute("id", ErrorId(fieldId));
            return;
        }

        // A hidden input is nobody's to correct, and may carry no ARIA: its error shows in the summary only.
        var hidden = output.Attributes.TryGetAttribute("type", out var type) && string.Equals(type.Value?.ToString(), "hidden", StringComparison.OrdinalIgnoreCase);
        if (!hidden && ViewContext.ModelState.TryGetValue(name, out var entry) && entry.Errors.Count > 0)
        {
            var id = output.Attributes.TryGetAttribute("id", out var idAttribute) ? idAttribute.Value?.ToString() ?? fieldId : fieldId;
            var describedBy = output.Attributes.TryGetAttribute("aria-describedby", out var existing) ? existing.Value?.ToString() + " " : "";
            output.Attributes.SetAttribute("aria-invalid", "true");
            output.Attributes.SetAttribute("aria-describedby", describedBy + ErrorId(id));
        }
    }
}
