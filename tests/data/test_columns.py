"""The encrypted column type and the blind index, on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Integer, String, create_engine, insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from qrc.crypto.errors import DecryptionError
from qrc.data.columns import BlindIndex, EncryptedText, use_encryptor
from qrc.data.sdk import DataEncryptor
from qrc.keys.service import KeyService


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    email: Mapped[str] = mapped_column(EncryptedText("sym", bind_primary_key=True))
    note: Mapped[str | None] = mapped_column(EncryptedText("pq"), nullable=True)
    email_tag: Mapped[str | None] = mapped_column(String(64), index=True)


@pytest.fixture
def engine(pg_url: str, sdk: DataEncryptor) -> Iterator[Engine]:
    use_encryptor(sdk)
    engine = create_engine(pg_url)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()
    use_encryptor(None)


def _raw(engine: Engine, column: str) -> dict[int, str]:
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT id, {column} FROM customers ORDER BY id"))
        return {row[0]: row[1] for row in rows}


def test_round_trip_through_the_orm_and_core(engine: Engine) -> None:
    with Session(engine) as session:
        session.add_all(
            [Customer(id=1, email="a@x.org", note="first"), Customer(id=2, email="b@x.org")]
        )
        session.commit()
        assert session.get(Customer, 1).email == "a@x.org"  # expired on commit: reloaded
    raw = _raw(engine, "email")
    assert all(v.startswith("qrcd1:") for v in raw.values()) and "a@x.org" not in str(raw)
    with Session(engine) as session:
        assert session.scalars(select(Customer.email).order_by(Customer.id)).all() == [
            "a@x.org",
            "b@x.org",
        ]
        customer = session.get(Customer, 2)
        assert customer is not None and customer.note is None
        customer.email = "changed@x.org"
        session.commit()
    with Session(engine) as session:
        assert session.get(Customer, 2).email == "changed@x.org"
    # Core: a bound column takes a sealed value; an unbound one encrypts on its own.
    email_type = Customer.__table__.c.email.type
    with engine.begin() as conn:
        conn.execute(
            insert(Customer.__table__).values(id=3, email=email_type.seal("c@x.org", 3), note="n")
        )
        with pytest.raises(Exception, match="binds the primary key"):
            conn.execute(insert(Customer.__table__).values(id=4, email="plain"))
    with engine.connect() as conn:
        row = conn.execute(select(Customer.email, Customer.note).where(Customer.id == 3)).one()
        assert tuple(row) == ("c@x.org", "n")


def test_primary_key_must_be_set_before_insert(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Customer(email="no-id@x.org"))
        with pytest.raises(Exception, match="primary key"):
            session.commit()
    assert _raw(engine, "email") == {}  # nothing written


@pytest.mark.parametrize("attack", ["other-row", "other-column", "truncated", "corrupt"])
def test_moved_or_damaged_values_fail_opaquely(engine: Engine, attack: str) -> None:
    with Session(engine) as session:
        session.add_all(
            [Customer(id=1, email="a@x.org", note="n1"), Customer(id=2, email="b@x.org")]
        )
        session.commit()
    raw = _raw(engine, "email")
    with engine.begin() as conn:
        if attack == "other-row":
            conn.execute(text("UPDATE customers SET email = :v WHERE id = 2"), {"v": raw[1]})
        elif attack == "other-column":
            conn.execute(text("UPDATE customers SET note = :v WHERE id = 2"), {"v": raw[1]})
        elif attack == "truncated":
            conn.execute(text("UPDATE customers SET email = :v WHERE id = 2"), {"v": raw[2][:-9]})
        else:
            bad = raw[2][:40] + ("A" if raw[2][40] != "A" else "B") + raw[2][41:]
            conn.execute(text("UPDATE customers SET email = :v WHERE id = 2"), {"v": bad})
    with Session(engine) as session, pytest.raises(DecryptionError):
        session.execute(select(Customer).where(Customer.id == 2)).scalars().all()
    with Session(engine) as session:  # the untouched row still reads
        assert session.get(Customer, 1).email == "a@x.org"


def test_plaintext_is_refused_unless_allowed(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO customers (id, email) VALUES (1, 'plain@x.org')"))
    with Session(engine) as session, pytest.raises(DecryptionError):
        session.get(Customer, 1)
    lenient = EncryptedText("sym", bind_primary_key=True, allow_plaintext=True)
    bound = lenient.for_column(Customer.__table__, Customer.__table__.c.email)
    assert bound.process_result_value("1|plain@x.org", None) == "plain@x.org"  # type: ignore[arg-type]


def test_blind_index_finds_equal_values(engine: Engine, sdk: DataEncryptor) -> None:
    secret = BlindIndex.create_secret(sdk, "sym")
    index = BlindIndex(sdk, secret, size=8, normalise=str.lower)
    again = BlindIndex(sdk, secret, size=8, normalise=str.lower)
    tag = index.tag("customers", "email", "A@x.org")
    assert len(tag) == 16 and tag == again.tag("customers", "email", "a@x.org")
    assert tag != index.tag("customers", "other", "a@x.org")  # per column
    other_secret = BlindIndex(sdk, BlindIndex.create_secret(sdk, "sym"), size=8)
    assert other_secret.tag("customers", "email", "a@x.org") != tag
    with Session(engine) as session:
        for i, email in enumerate(["a@x.org", "b@x.org", "A@X.org"], start=1):
            tag_i = index.tag("customers", "email", email)
            session.add(Customer(id=i, email=email, email_tag=tag_i))
        session.commit()
        found = session.scalars(select(Customer.id).where(Customer.email_tag == tag)).all()
    assert sorted(found) == [1, 3]
    with pytest.raises(ValueError):
        BlindIndex(sdk, secret, size=2)


def test_unchanged_rows_are_not_encrypted_again(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Customer(id=1, email="a@x.org", note="x"))
        session.commit()
    before = _raw(engine, "email")
    with Session(engine) as session:
        customer = session.get(Customer, 1)
        assert customer is not None
        customer.email_tag = "t"
        session.commit()
    assert _raw(engine, "email") == before
    with engine.begin() as conn:  # Core update of the unbound column
        conn.execute(update(Customer.__table__).where(Customer.id == 1).values(note="y"))
    with Session(engine) as session:
        assert session.get(Customer, 1).note == "y"


def test_unreachable_key_service_writes_nothing(engine: Engine) -> None:
    from qrc.data.cache import CacheLimits
    from qrc.data.keysource import KeyServiceUnavailable, RemoteKeySource
    from qrc.transit.client import PQClient

    source = RemoteKeySource(
        PQClient("http://127.0.0.1:9", token="qrc_x", timeout=2), retries=1, sleep=lambda _: None
    )
    use_encryptor(DataEncryptor(source, cache=CacheLimits()))
    with Session(engine) as session:
        session.add(Customer(id=1, email="a@x.org", note="n"))
        with pytest.raises(KeyServiceUnavailable, match="unreachable after 2 attempts"):
            session.commit()
    assert _raw(engine, "email") == {}


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    iban: Mapped[str] = mapped_column(EncryptedText("sym", bind_primary_key=True, register=True))


def test_registered_rows_are_rewrapped_in_place(
    engine: Engine, sdk: DataEncryptor, service: KeyService
) -> None:
    from qrc.data.rewrap import SqlTarget, rewrap_key

    with Session(engine) as session:
        session.add_all([Account(id=f"acc-{i}", iban=f"DE{i:020d}") for i in range(6)])
        session.commit()
        account = session.get(Account, "acc-2")
        assert account is not None
        account.iban = "FR00000000000000000002"
        session.commit()
    records = service.data.under("sym")
    assert sorted(r.location for r in records) == [f"sql:accounts/iban/acc-{i}" for i in range(6)]
    before = {r.location: r.integrity_hash for r in records}
    service.keys.rotate("sym", actor="test")
    report = rewrap_key(sdk, "sym", {"sql": SqlTarget(engine)})
    assert report.rewrapped == 6 and report.missing == 0
    after = service.data.under("sym")
    assert all(r.key_version == 2 for r in after)
    assert all(before[r.location] != r.integrity_hash for r in after)
    service.keys.set_min_decryption_version("sym", 2, actor="test")
    fresh = DataEncryptor.local(service)
    use_encryptor(fresh)
    with Session(engine) as session:
        ibans = {row[0]: row[1] for row in session.execute(select(Account.id, Account.iban))}
    assert ibans == {f"acc-{i}": ("FR00000000000000000002" if i == 2 else f"DE{i:020d}")
                     for i in range(6)}  # fmt: skip
    fresh.close()


def test_registration_failure_commits_nothing(engine: Engine, sdk: DataEncryptor) -> None:
    use_encryptor(DataEncryptor(sdk.source))  # no index to register in
    with Session(engine) as session:
        session.add(Account(id="acc-x", iban="DE1"))
        with pytest.raises(RuntimeError, match="needs a DataEncryptor with an index"):
            session.commit()
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM accounts")) == 0
    with pytest.raises(ValueError, match="needs bind_primary_key"):
        EncryptedText("sym", register=True)
