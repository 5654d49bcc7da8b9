//! Texts on which the fast engine must give the reference engine's ids before it is used.
//!
//! Short and hostile: every script and symbol class the pre-tokenizers split on, whitespace
//! runs, line endings, digits, and the special-token strings as literal text.

/// The probe texts.
pub(super) fn probe_texts() -> Vec<String> {
    let fixed = [
        "",
        "Hello, world! It's the 29th of November; we'll see, I'm sure they've done it.",
        "   leading spaces, trailing spaces   ",
        "Ça va? Über naïve café — “quotes” and ‘single quotes’ … façade, Ærø, straße.",
        "e\u{301} vs é, ﬁ ligature, ＦＵＬＬＷＩＤＴＨ, ½ ², Ⅻ, \u{200b}zero\u{200d}width\u{feff}",
        "Emoji: 👍🏽 👨‍👩‍👧‍👦 🇺🇸 ❤️ 🤖🚀✨ 😀😀😀",
        "中华人民共和国成立于1949年。日本語のテキスト、カタカナとひらがな。한국어 문장입니다.",
        "مرحبا بالعالم — שלום עולם — नमस्ते दुनिया — สวัสดีครับ — Привет, мир — Γειά σου",
        "line one\r\nline two\r\n\r\nline four\rcarriage\n\n\nthree newlines",
        "tabs\t\t\tand\u{a0}no-break\u{3000}ideographic space\u{2028}line separator",
        "1234567890 3.14159 1,000,000 -42 0x1F 2026-11-29 $12.50 10% 1e-9 ٣٤٥ ३४५",
        "[MASK] [SEP] [CLS][PAD][UNK] the [MASK]ed word, [SEP]arated, [mask] [ SEP ]",
        "<|begin_of_text|>hello<|end_of_text|> <|eot_id|> <s> </s> <pad> <unk> <mask>",
        "fn main() {\n    println!(\"{}\", x?);\n}\n\t// comment\n",
        "!!!???...---___***///\\\\ ((()))[[[]]]{{{}}} @#&^~`|<>",
        "abcабвαβγ mixedСкрипт word's ANOTHER'S don'T",
        "control\u{1}chars\u{7f}and\u{0}nul",
    ];
    let mut texts: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
    texts.push(format!("a{}b", " ".repeat(200)));
    texts.push(format!("x{}y{}z", "\n".repeat(50), " \t".repeat(40)));
    texts.push("supercalifragilistic".repeat(30));
    texts.push("é".repeat(300));
    texts.push(fixed.join(" "));
    texts
}
