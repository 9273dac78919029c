from documents.services.keywords import extract_keywords, keywords_for_chunks


def test_recurring_multisyllable_terms_and_acronyms_are_keywords():
    chunks = [
        "Nhân viên được nghỉ phép năm 12 ngày. Đơn nghỉ phép gửi qua hệ thống HRM. Nghỉ phép không lương cần duyệt.",
        "Kết nối VPN bằng tài khoản SSO. Nếu VPN lỗi, liên hệ bộ phận hỗ trợ kỹ thuật qua Jira.",
    ]
    first, second = keywords_for_chunks(chunks)
    assert "nghỉ phép" in first and "HRM" in first
    assert "VPN" in second and "SSO" in second
    assert not any(k in ("và", "của", "các") for k in first + second)


def test_a_fragment_of_a_longer_term_is_not_kept_beside_it():
    text = "bảo hiểm xã hội. bảo hiểm xã hội. bảo hiểm xã hội bắt buộc. đóng bảo hiểm xã hội."
    keywords = extract_keywords(text)
    assert "bảo hiểm xã hội" in keywords
    assert "bảo hiểm xã" not in keywords and "hiểm xã hội" not in keywords
