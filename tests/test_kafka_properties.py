"""The .properties text the launcher writes for Kafka (the broker's and the bench's
client login): what Java's Properties reader would take as an escape is escaped."""

from __future__ import annotations

from lintas_deploy.kafka import properties_text


def test_properties_escape_what_java_would_read_as_an_escape() -> None:
    text = properties_text(
        [
            ("sasl.jaas.config", 'm required password="p\\w";'),
            ("padded", " leading space"),
            ("unicode", "é\nnext"),
            ("count", 3),
        ]
    )
    assert text.splitlines() == [
        'sasl.jaas.config=m required password="p\\\\w";',
        "padded=\\ leading space",
        "unicode=\\u00e9\\nnext",
        "count=3",
    ]
